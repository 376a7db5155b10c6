"""How a classifier's accuracy on real test images moves when the flows' residual noise is added:
x → 0.97·x + σ·ε (a flow stopped at t_end = 0.97 leaves σ ≈ 0.03).

    python benchmarks/judge_noise.py checkpoints/judge.pt checkpoints/classifier.pt
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from mi_datagen.flows.images import load_images
from mi_datagen.flows.judge import load_judge
from mi_datagen.flows.quality import predict


def main(paths: list[str], n: int = 2000) -> None:
    torch.set_num_threads(1)
    test = load_images("imagefolder", "data/cifar10-jpg/test", train=False, cache_dir="data/cache")
    idx = np.random.default_rng(0).choice(len(test.labels), n, replace=False)
    x, y = torch.from_numpy(test.to_unit(idx)), test.labels[idx]
    for path in paths:
        net = load_judge(path)
        g = torch.Generator().manual_seed(0)
        for s in (0.0, 0.03, 0.06):
            xn = 0.97 * x + s * torch.randn(x.shape, generator=g) if s else x
            p, _ = predict(net, xn)
            counts = np.bincount(p, minlength=10).tolist()
            print(f"{path}: σ = {s:.2f}: accuracy {float((p == y).mean()):.3f}, predicted classes {counts}")


if __name__ == "__main__":
    main(sys.argv[1:])
