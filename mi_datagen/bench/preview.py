"""Preview grid of a store: rows = samples, columns = modalities. Values are clamped to [-1, 1] and
rounded to 8 bits for display only — the store keeps the unclamped floats (and says so in the title)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def to_display(x: np.ndarray) -> np.ndarray:
    """(C, H, W) floats in the flows' [-1, 1] data range → (H, W, C) uint8, clamped."""
    img = np.clip((np.asarray(x, dtype=np.float64) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    if img.ndim == 1:
        img = img[None, None, :]
    elif img.ndim == 2:
        img = img[None]
    return np.moveaxis(img, 0, -1) if img.shape[0] in (1, 3) else img[..., None]


def preview_grid(images: dict[str, np.ndarray], theta: np.ndarray | None, out: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(images)
    rows = next(iter(images.values())).shape[0]
    fig, axes = plt.subplots(rows, len(names), figsize=(max(4.0, 1.4 * len(names) + 0.6), 1.4 * rows + 1.0), squeeze=False)
    for r in range(rows):
        for c, m in enumerate(names):
            ax = axes[r, c]
            img = to_display(images[m][r])
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(m, fontsize=9)
            if c == 0 and theta is not None:
                ax.set_ylabel(f"θ={theta[r]:+.2f}", fontsize=8)
    width = max(24, int(12 * fig.get_figwidth()))  # characters that fit across the figure at 8 pt
    fig.suptitle("\n".join([*textwrap.wrap(title, width), "clamped 8-bit preview;", "the stored values are unclamped floats"]),
                 fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
