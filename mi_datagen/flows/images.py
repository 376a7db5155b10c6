"""Training images: torchvision CIFAR-10 (download) or any ImageFolder, cached as one uint8 array."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mi_datagen.errors import DataError


@dataclass(frozen=True)
class ImageData:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    description: dict

    def to_unit(self, idx) -> np.ndarray:
        """Images idx as float32 in [-1, 1] (the flow's data space)."""
        return self.images[idx].astype(np.float32) / 127.5 - 1.0


def _imagefolder(root: Path, image_size: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from tqdm import tqdm

    ds = ImageFolder(str(root))
    if len(ds) == 0:
        raise DataError(f"{root}: no images found (ImageFolder layout: root/<class>/<image>)")
    arrs = []
    for path, _ in tqdm(ds.samples, desc=f"reading {root.name}", unit="img", mininterval=2):
        with Image.open(path) as f:
            im = f.convert("RGB")
            if image_size and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
            arrs.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
    return np.stack(arrs), np.asarray(ds.targets, np.int64), list(ds.classes)


def load_images(source: str, root: str | Path, *, train: bool = True, cache_dir: str | Path | None = None,
                image_size: int | None = 32, download: bool = False) -> ImageData:
    """``source``: ``cifar10`` (torchvision; ``download=True`` fetches it) or ``imagefolder``.

    ImageFolder reads are cached in ``cache_dir`` as .npz keyed by the file list, so a second
    run starts at once.
    """
    root = Path(root)
    if source == "cifar10":
        from torchvision.datasets import CIFAR10

        try:
            ds = CIFAR10(str(root), train=train, download=download)
        except RuntimeError as err:
            raise DataError(f"{root}: CIFAR-10 not found ({err}); pass --download, or use an ImageFolder") from None
        images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))
        labels, classes = np.asarray(ds.targets, np.int64), list(ds.classes)
        desc = {"source": "torchvision.CIFAR10", "root": str(root), "train": train}
    elif source == "imagefolder":
        if not root.is_dir():
            raise DataError(f"{root}: not a directory (expected ImageFolder layout root/<class>/<image>)")
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        key = hashlib.sha256(("\n".join(files) + f"|{image_size}").encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"imagefolder-{key}.npz" if cache_dir else None
        if cache is not None and cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                images, labels, classes = z["images"], z["labels"], [str(c) for c in z["classes"]]
        else:
            images, labels, classes = _imagefolder(root, image_size)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, images=images, labels=labels, classes=np.array(classes))
        desc = {"source": "ImageFolder", "root": str(root), "files_sha256_16": key}
    else:
        raise DataError(f"unknown data source {source!r}; use 'cifar10' or 'imagefolder'")
    desc.update(n=int(len(labels)), classes=classes, shape=list(images.shape[1:]))
    return ImageData(images, labels, tuple(classes), desc)
