"""Multimodal self-supervised learning against ground truth.

Contrastive encoders (one per modality) trained on a store through ``MIDataset`` and a DataLoader,
then measured against the store's exact information: a linear probe for θ against the Bayes floor
σ_θ·e^(−I(θ; X)), the held-out InfoNCE bound against I(Xi; Xj), and the MI between the learned
representations, which by data processing cannot exceed I(Xi; Xj).

    from mi_datagen.ssl import SSLSettings, train_encoders, evaluate
    enc = train_encoders(store, ["X1", "X2"], SSLSettings(steps=500), seed=0)
    evaluate(enc, probes=[["X1"], ["X1", "X2"]], pairs=[("X1", "X2")])
"""

from mi_datagen.ssl.metrics import Evaluation, evaluate
from mi_datagen.ssl.objectives import OBJECTIVES, contrastive_loss, infonce_bound
from mi_datagen.ssl.train import Encoders, SSLSettings, train_encoders
from mi_datagen.store.truth import Truth

__all__ = ["OBJECTIVES", "Encoders", "Evaluation", "SSLSettings", "Truth", "contrastive_loss", "evaluate",
           "infonce_bound", "train_encoders"]
