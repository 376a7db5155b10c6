"""``generate``: one explicit spec into one store — a ``GenerationJob`` written by a ``StoreWriter``.

The front door (``mi_datagen.generate``) adds spec files, sweeps, member selection and defaults on top.
"""

from __future__ import annotations

from pathlib import Path

from mi_datagen.spec.models import GraphSpec
from mi_datagen.store.config import DTYPES, GenerateConfig
from mi_datagen.store.job import GenerationJob
from mi_datagen.store.manifest import DatasetManifest
from mi_datagen.store.writer import StoreWriter

__all__ = ["DTYPES", "GenerateConfig", "GenerationJob", "StoreWriter", "generate"]


def generate(spec: GraphSpec, out: str | Path, cfg: GenerateConfig, base_dir: str | Path = ".") -> DatasetManifest | None:
    """Generate ``spec`` into ``out``; returns the final manifest on rank 0 (None on other ranks)."""
    return StoreWriter(GenerationJob(spec, cfg, base_dir), str(out)).run()
