"""Quality figures for the model card, measured by a classifier trained on the real data (the judge,
``flows.judge``; ``SmallCNN`` is the earlier, weaker one, kept to re-read old figures).

Per class:
(a) consistency: the judge's accuracy on generated images of the class, next to its accuracy on real
    test images of the class;
(b) Fréchet distance in the judge's features between generated and real test images, next to the
    same distance between real train and real test images (the floor);
(c) precision and recall: k-NN manifold estimates in the same features (Kynkäänniemi et al. 2019):
    the share of generated images inside the real images' k-NN balls, and of real images inside the
    generated images' balls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import linalg
from torch import nn
from tqdm import tqdm

from mi_datagen.flows.images import ImageData


class SmallCNN(nn.Module):
    """A compact CIFAR classifier (~0.3M parameters); ``features`` is the 128-d penultimate layer."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _batches(data: ImageData, idx: np.ndarray, bs: int):
    for i in range(0, len(idx), bs):
        j = idx[i:i + bs]
        yield torch.from_numpy(data.to_unit(j)), torch.from_numpy(data.labels[j])


def train_classifier(train: ImageData, epochs: int = 5, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     quiet: bool = False) -> tuple[SmallCNN, dict]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(len(train.classes))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * ((len(train.labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    bar = tqdm(total=steps, desc="classifier", disable=quiet, mininterval=5)
    for _ in range(epochs):
        net.train()
        for x, y in _batches(train, rng.permutation(len(train.labels)), batch_size):
            flip = torch.from_numpy(rng.random(len(y)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    return net.eval(), {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "wall_s": time.time() - t0}


@torch.no_grad()
def predict(net: Any, x: torch.Tensor, bs: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, features) for images in [-1, 1] (clamped: the classifier saw real images); ``net``
    has ``features`` and a linear ``head``."""
    preds, feats = [], []
    for i in range(0, len(x), bs):
        xb = x[i:i + bs].clamp(-1, 1)
        f = net.features(xb)
        preds.append(net.head(f).argmax(1).numpy())
        feats.append(f.numpy().astype(np.float64))
    return np.concatenate(preds), np.concatenate(feats)


def accuracy(net: SmallCNN, data: ImageData) -> float:
    x = torch.from_numpy(data.to_unit(np.arange(len(data.labels))))
    p, _ = predict(net, x)
    return float((p == data.labels).mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) between two feature samples."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(sa @ sb, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2.0 * covmean))


def _knn_radii(a: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(a, a)
    return d.kthvalue(k + 1, dim=1).values  # the 0th neighbour is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall of ``fake`` against ``real`` features (Kynkäänniemi et al. 2019)."""
    r, f = torch.from_numpy(real).double(), torch.from_numpy(fake).double()
    cross = torch.cdist(f, r)  # (n_fake, n_real)
    precision = (cross <= _knn_radii(r, k)[None, :]).any(1).double().mean()
    recall = (cross.T <= _knn_radii(f, k)[None, :]).any(1).double().mean()
    return float(precision), float(recall)


@dataclass
class ClassQuality:
    label: str
    consistency: float  # the judge's accuracy on generated images of this class
    fd_generated_vs_test: float
    fd_train_vs_test: float  # the same distance between two real samples (the floor)
    real_accuracy: float | None = None  # the judge's accuracy on real test images of this class
    precision: float | None = None
    recall: float | None = None

    def targets_met(self) -> dict[str, bool | None]:
        """The flow issue's targets: consistency ≥ 0.85 × real accuracy, FD ≤ 2 × floor, P and R ≥ 0.5."""
        return {"consistency": None if self.real_accuracy is None else self.consistency >= 0.85 * self.real_accuracy,
                "fd": self.fd_generated_vs_test <= 2 * self.fd_train_vs_test,
                "precision": None if self.precision is None else self.precision >= 0.5,
                "recall": None if self.recall is None else self.recall >= 0.5}


def evaluate_flow(flow, clf: nn.Module, train: ImageData, test: ImageData, n_per_class: int = 500,
                  seed: int = 0, quiet: bool = False) -> list[ClassQuality]:
    """Per class: generate ``n_per_class`` images with the flow's certified solver, score them."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = []
    for c, name in enumerate(tqdm(flow.classes, desc="quality", disable=quiet)):
        z = torch.randn((n_per_class, *flow.shape), generator=gen)
        x = torch.cat([flow.map(z[i:i + 64], c) for i in range(0, n_per_class, 64)])
        pred, f_gen = predict(clf, x)
        te = np.flatnonzero(test.labels == c)
        tr = rng.choice(np.flatnonzero(train.labels == c), size=min(len(te), n_per_class), replace=False)
        p_test, f_test = predict(clf, torch.from_numpy(test.to_unit(te)))
        _, f_train = predict(clf, torch.from_numpy(train.to_unit(tr)))
        p, r = precision_recall(f_test, f_gen)
        out.append(ClassQuality(name, float((pred == c).mean()), frechet_distance(f_gen, f_test),
                                frechet_distance(f_train, f_test), float((p_test == c).mean()), p, r))
    return out
