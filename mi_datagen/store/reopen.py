"""Rebuild the generation job of an existing store from its manifest (for checks made after the fact).

The job gives back the exact flow inputs of any sample (counter-based latents from the recorded
seed) and each modality's certified applied map with its exact inverse. The flows are loaded by
the references the spec names and must be the very files the store was written with (sha256).
"""

from __future__ import annotations

from pathlib import Path

from mi_datagen.spec.models import GraphSpec
from mi_datagen.store.generate import GenerateConfig, Generator
from mi_datagen.store.manifest import DatasetManifest
from mi_datagen.store.zarr_store import StoreError, read_manifest


def job_for_store(path: str, base_dir: str | Path = ".", device: str = "cpu",
                  n_check: int = 8, entropy_samples: int = 0) -> tuple[Generator, DatasetManifest]:
    """(the store's generation job, its manifest). ``base_dir``: where relative flow paths in the spec
    resolve (the spec file's folder when the store was made). ``n_check``: samples for ``check_inputs``;
    ``entropy_samples``: samples for ``image_entropies_estimate``."""
    man = read_manifest(str(path))
    spec = GraphSpec.model_validate(man.info.spec)
    cfg = GenerateConfig(n=man.n, seed=man.seed, dtype=man.dtype, tile=man.tile, shard_size=man.shard_size,
                         chunk_size=man.chunk_size, threads=man.cpu_threads, latents=bool(man.latent_arrays),
                         device=device, n_check=n_check, entropy_samples=entropy_samples, progress=False)
    job = Generator(spec, str(path), cfg, base_dir)
    recorded = {m.name: m.flow for m in man.modalities}
    for m in job.mods:
        rec = recorded.get(m.name)
        if m.flow is None or rec is None:
            continue
        if m.flow.sha256 != rec.sha256:
            raise StoreError(f"{path}: modality {m.name} was written with flow {rec.file} (sha256 {rec.sha256[:12]}…), "
                             f"but {m.ref!r} now resolves to {m.flow.path.name} (sha256 {m.flow.sha256[:12]}…); "
                             f"pass the base folder the store's spec was generated from, or restore that flow file")
    return job, man
