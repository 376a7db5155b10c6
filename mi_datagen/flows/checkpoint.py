"""Checkpoint I/O: torch.save with a sha256 recorded beside it; loads verify it and use weights_only=True."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch

from mi_datagen.errors import CheckpointError


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(obj: dict, path: str | Path) -> str:
    """Atomic save (write to a temp file, then rename) plus ``<path>.sha256``; returns the hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    Path(str(path) + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def recorded_sha256(path: str | Path) -> str | None:
    side = Path(str(path) + ".sha256")
    if not side.is_file():
        return None
    words = side.read_text(errors="replace").split()
    if not words or not re.fullmatch(r"[0-9a-f]{64}", words[0]):
        raise CheckpointError(f"{side}: not a sha256 sidecar (expected 64 hex digits first); refusing to load {path}")
    return words[0]


def load_checkpoint(path: str | Path, expected_sha256: str | None = None, map_location="cpu") -> dict:
    """Verify the sha256 (``expected_sha256``, else the one recorded beside the file), then load."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    expected = expected_sha256 or recorded_sha256(path)
    if expected is None:
        raise CheckpointError(f"{path}: no sha256 recorded ({path}.sha256 missing) and none given; refusing to load")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(f"{path}: sha256 mismatch (expected {expected}, file has {actual}); refusing to load")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: holds objects other than tensors and plain data (a pickled payload); "
                              "refusing to load it (checkpoints are read with weights_only=True)") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: a checkpoint holds a dict, this one a {type(obj).__name__}")
    return obj
