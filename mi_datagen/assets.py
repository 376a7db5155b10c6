"""Where the shipped files are: the example specs and the flow checkpoints (with their registry).

In a checkout they are the top-level ``dag_specs/`` and ``checkpoints/`` folders; an installed wheel
carries them as package data (``mi_datagen/examples``, ``mi_datagen/checkpoints``, mapped from those
folders in pyproject.toml). ``$MI_DATAGEN_CHECKPOINTS`` points the flow registry elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["DEFAULT_FLOW", "examples_dir", "example_spec", "example_names", "checkpoints_dir", "registry", "register"]

_HERE = Path(__file__).resolve().parent
REGISTRY = "registry.json"
# The flow a spec gets when it names none: the v2 weights on the 18-step grid whose certificate coverage holds
# (benchmarks/results/certificate-coverage/default-v2.1). "default-v2" (the same weights on 15 steps) and "default"
# (v1, cpu-small) stay registered and pinned, so every store made with them keeps its sha256 and can be checked and
# resumed: a manifest's spec names its flow explicitly.
DEFAULT_FLOW = "default-v2.1"


def _shipped(packaged: str, checkout: str) -> Path:
    inside = _HERE / packaged
    return inside if inside.is_dir() else _HERE.parent / checkout


def examples_dir() -> Path:
    """The folder of shipped example specs."""
    return _shipped("examples", "dag_specs")


def example_names() -> list[str]:
    d = examples_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def example_spec(name: str) -> Path | None:
    """The shipped example ``name`` (with or without ``.yaml``), or None."""
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    if "/" in stem or "\\" in stem:
        return None
    p = examples_dir() / f"{stem}.yaml"
    return p if p.is_file() else None


def checkpoints_dir() -> Path:
    """The shipped flow checkpoints and their registry: $MI_DATAGEN_CHECKPOINTS, else the shipped folder."""
    env = os.environ.get("MI_DATAGEN_CHECKPOINTS") or os.environ.get("MI_DATAGEN_FLOWS")
    return Path(env) if env else _shipped("checkpoints", "checkpoints")


def registry(folder: Path | None = None) -> dict:
    """Registered flows: name → {file, sha256, step[, solver, grid_design, calibration]} (read here and nowhere
    else). An entry with a ``solver`` applies the pinned weights of ``file`` on that solver instead of the file's."""
    p = (folder or checkpoints_dir()) / REGISTRY
    if not p.is_file():
        return {}
    from mi_datagen.errors import CheckpointError

    try:
        reg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{p}: not a valid flow registry ({err})") from None
    if not isinstance(reg, dict):
        raise CheckpointError(f"{p}: a flow registry is a JSON object of name → entry")
    return reg


def register(folder: Path, name: str, entry: dict) -> Path:
    """Add or replace ``name`` in ``folder``'s registry (written atomically; written here and nowhere else)."""
    reg = registry(folder)
    reg[name] = entry
    p = folder / REGISTRY
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(reg, indent=2) + "\n")
    os.replace(tmp, p)
    return p
