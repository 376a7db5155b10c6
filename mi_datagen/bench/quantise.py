"""What 8-bit storage destroys: the uint8 export of a float store, measured through the exact inverse.

The export is u = round((x + 1)·127.5) clamped to [0, 255] (the flows' data range is [−1, 1]); it
dequantises to x̃ = u/127.5 − 1. For each modality, x̃ of the first samples is inverted exactly
through the store's certified applied map and compared with the flow inputs w of the same samples
(rebuilt from the recorded seed): the RMS δ of w̃ − w is the perturbation 8-bit storage puts on the
latents. The MI of the SEM with independent input noise of that RMS (``info.robustness``) models
what survives — the same model the manifest's MI interval uses for float rounding; a model of the
loss, not a bound. Also measured: the fraction of clamped values over the whole store. When the
store lists h(X), the export's discrete entropy at fine quantisation is H(U) ≈ h(X) + d·log 127.5.
"""

from __future__ import annotations

import math

import numpy as np

LEVELS = 255
SCALE = LEVELS / 2.0  # uint8 steps per unit of x


def to_uint8(x: np.ndarray) -> np.ndarray:
    """The clamped 8-bit export of float images in the flows' [−1, 1] range."""
    return np.clip(np.round((np.asarray(x, dtype=np.float64) + 1.0) * SCALE), 0, LEVELS).astype(np.uint8)


def from_uint8(u: np.ndarray) -> np.ndarray:
    return u.astype(np.float32) / np.float32(SCALE) - np.float32(1.0)


def clamped_fraction(arr, rows: int = 1024) -> float:
    """Fraction of values outside [−1, 1] (what the export clamps), read ``rows`` samples at a time."""
    n, out = arr.shape[0], 0
    for i in range(0, n, rows):
        x = np.asarray(arr[i:i + rows])
        out += int(np.count_nonzero((x < -1.0 - 0.5 / SCALE) | (x > 1.0 + 0.5 / SCALE)))
    return out / float(n * math.prod(arr.shape[1:]))


def discrete_entropy_fine(h_nats: float, d: int) -> float:
    """H(U) ≈ h(X) − d·log Δ with bin width Δ = 1/127.5 (fine-quantisation limit, clamping ignored)."""
    return h_nats + d * math.log(SCALE)


def quantisation_effect(store, n_check: int = 8, device: str = "cpu") -> dict:
    """Per modality: clamped fraction, latent round trip of the uint8 export; per unconditional MI of the
    table: the exact value and the value the 8-bit perturbation model leaves."""
    from mi_datagen.info.robustness import perturbed_mi
    from mi_datagen.store.job import GenerationJob
    from mi_datagen.store.modality import roundtrip_record
    from mi_datagen.store.store import Store

    store = store if isinstance(store, Store) else Store(store)
    path, man = store.path, store.manifest
    job = GenerationJob.from_store(store, device, n_check=n_check)
    w = job.check_inputs()
    k = next(iter(w.values())).shape[0]
    recorded = {r.name: r.roundtrip for r in man.modalities}
    mods, deltas = {}, {}
    for m in job.mods:
        arr = store.array(m.name)
        x = np.asarray(arr[:k])
        q = from_uint8(to_uint8(x))
        back = m.invert(q, job.device)
        rt = roundtrip_record(w[m.name], back, "exact inverse of the dequantised uint8 export")
        float_rt = recorded.get(m.name)  # measured at generation on the same first samples
        if float_rt is None or float_rt.n_samples != k:
            float_rt = roundtrip_record(w[m.name], m.invert(x, job.device), f"exact inverse of the stored {man.dtype} values")
        deltas[m.name] = rt.abs_rms_max
        mods[m.name] = {"clamped_fraction": clamped_fraction(arr), "x_min": float(x.min()), "x_max": float(x.max()),
                        "uint8_roundtrip": rt.model_dump(), "float_roundtrip": float_rt.model_dump(),
                        "quantisation_rms": float(np.sqrt(np.mean((q.astype(np.float64) - x) ** 2)))}
    rows = [(r.a, r.b, r.given, r.nats) for r in man.info.mutual_information if not r.given]
    uint8_mi = perturbed_mi(job.solver.sem, rows, deltas, {m.name: m.standardizer is not None for m in job.mods})
    return {"store": str(path), "n_check": k, "levels": LEVELS + 1, "range": [-1.0, 1.0], "modalities": mods,
            "mi": [{"a": list(a), "b": list(b), "nats": nats, "uint8_model_nats": p}
                   for (a, b, _, nats), p in zip(rows, uint8_mi)],
            "method": "exact inverse of the dequantised export vs the flow inputs; MI of the SEM with independent "
                      "Gaussian input noise of that RMS (a model of the loss, not a bound)"}
