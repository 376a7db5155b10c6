"""``GenerateConfig``: the settings of one generation run (validated at construction)."""

from __future__ import annotations

from dataclasses import dataclass

from mi_datagen.errors import ConfigError

__all__ = ["GenerateConfig", "DTYPES"]

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class GenerateConfig:
    n: int
    seed: int = 0
    dtype: str = "float32"
    batch_size: int = 64
    tile: int = 32  # 32-sample tiles ran ~10 % faster than 8 on this CPU (1-thread A/B, benchmarks/RESULTS.md)
    shard_size: int = 1024
    chunk_size: int = 16
    latents: bool = False
    pmi: bool = True
    device: str = "cpu"
    threads: int = 1
    workers: int = 1
    n_check: int = 8
    entropy_samples: int = 0  # > 0: estimate h(X_i), h(X_i, X_j) from flow log-dets on this many samples
    entropy_terms: int = 10
    entropy_probes: int = 4
    lipschitz: bool = False
    certify_fraction: float = 0.0  # per-sample certificate of the last certify_steps steps on this fraction
    certify_steps: int = 1
    force: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.n >= 1, f"n must be >= 1, got {self.n}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.tile >= 1, f"tile must be >= 1, got {self.tile}"),
            (self.chunk_size >= 1 and self.shard_size % self.chunk_size == 0,
             f"shard_size ({self.shard_size}) must be a positive multiple of chunk_size ({self.chunk_size})"),
            (self.shard_size % self.tile == 0,
             f"shard_size ({self.shard_size}) must be a multiple of tile ({self.tile}) so tiles align to sample indices"),
            (self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (self.n_check >= 1, f"n_check must be >= 1, got {self.n_check}"),
            (self.entropy_samples == 0 or self.entropy_samples >= 2,
             f"entropy_samples must be 0 (off) or >= 2, got {self.entropy_samples}"),
            (0.0 <= self.certify_fraction <= 1.0,
             f"certify_fraction must be in [0, 1] (the share of stored samples certified), got {self.certify_fraction}"),
            (self.certify_steps >= 1, f"certify_steps must be >= 1, got {self.certify_steps}"),
            (not (self.resume and self.overwrite), "resume and overwrite exclude each other; pick one"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def flow_batch(self) -> int:
        """Samples per solver call: the batch size rounded up to whole tiles (bytes never depend on it)."""
        return -(-self.batch_size // self.tile) * self.tile
