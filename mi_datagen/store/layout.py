"""Every array path of a dataset store, in one place (the writer, the Store read model and the checks use these).

    x/<modality>        (N, C, H, W) the stored images (float32 or float16)
    theta               (N,) float64, the target θ
    z/<modality>        (N, C, H, W) float64 latents (optional)
    pmi/<a>__<b>        (N,) float64 pointwise MI of the latents; a side of several nodes joins them with '+'
    cert/<modality>     (N,) float32 per-sample certificate of the applied map (``certify_fraction`` > 0): NaN not
                        checked, else the worst contraction rate / local spectral norm of the checked steps
                        (+inf: the inverse did not converge); ≥ 1 is a failure
    done                (n_shards,) uint8, 1 once the shard is written
    digests             (n_shards, k, 32) uint8: sha256 of each data array's rows in each shard (written
                        before the shard's done marker; the array order is the manifest's digest_arrays)
    templates/<i>       (d,) float64, the values of the spec's i-th file template (the store needs no files)

The same strings are the keys of an ``MIDataset`` sample, except that images are keyed by the bare
modality name (``"X1"``), as a user reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

THETA = "theta"
DONE = "done"
TEMPLATES = "templates"
CERT = "cert"
DIGESTS = "digests"
MANIFEST = "manifest.json"
PAIR_SEP = "__"
SET_SEP = "+"

# names a modality may not take: they would collide with store paths or Dataset keys
RESERVED_NAMES = frozenset({THETA, DONE, "index", "x", "z", "pmi", CERT, "manifest"})


def image(modality: str) -> str:
    return f"x/{modality}"


def latent(modality: str) -> str:
    return f"z/{modality}"


def cert(modality: str) -> str:
    return f"{CERT}/{modality}"


def template(i: int) -> str:
    return f"{TEMPLATES}/{i}"


def pmi(a: Sequence[str], b: Sequence[str]) -> str:
    return f"pmi/{SET_SEP.join(a)}{PAIR_SEP}{SET_SEP.join(b)}"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a node of a stored spec, or None if it can."""
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved by the store layout ({sorted(RESERVED_NAMES)})"
    for bad in (PAIR_SEP, SET_SEP, "/", ";"):
        if bad in name:
            return f"{name!r} contains {bad!r}, which the store uses to build array names"
    return None
