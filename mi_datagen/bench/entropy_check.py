"""``mi-datagen entropy-check``: Ĥ(X_a), Ĥ(X_b), Ĥ(X_a, X_b) and the MI they imply, next to the truth.

Truth: the exact MI from the manifest; entropies from the manifest's ``image_entropies`` (generate
with ``--entropy-samples``), or exact for flow-less modalities (latent entropy + standardisation
log-det). ``uint8=True`` checks the 8-bit export instead: values clamped to [−1, 1] and rounded,
so entropies are discrete and a compression code length (LZMA) applies directly; its MI is
bounded by the float store's (data processing), which shows what 8-bit storage destroys.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mi_datagen.estimators.data import load_pair
from mi_datagen.estimators.entropy import compressed_bits, entropy_of
from mi_datagen.store.zarr_store import read_manifest

LN2 = np.log(2.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """The clamped 8-bit export of float images in the flows' [−1, 1] range."""
    return np.clip(np.round((np.asarray(x, dtype=np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def true_entropies(path: str, a: str, b: str) -> dict[str, float] | None:
    man = read_manifest(path)
    rec = {tuple(r.nodes): r.nats for r in man.image_entropies}
    if rec:
        return {"a": rec.get((a,)), "b": rec.get((b,)), "ab": rec.get((a, b), rec.get((b, a)))}
    mods = {m.name: m for m in man.modalities}
    if all(x in mods and mods[x].flow is None and not mods[x].standardize for x in (a, b)):
        ent = {tuple(r.nodes): r.nats for r in man.info.entropies}
        if (a,) in ent and (b,) in ent:
            from mi_datagen.api import solver_for
            from mi_datagen.spec.models import GraphSpec

            solver = solver_for(GraphSpec.model_validate(man.info.spec))
            return {"a": ent[(a,)], "b": ent[(b,)], "ab": solver.entropy([a, b])}
    return None


def entropy_check(path: str, a: str, b: str, estimators=("gaussian", "kl"), sizes=None, seed: int = 0,
                  uint8: bool = False, flow_settings: dict | None = None) -> dict:
    x, y, truth = load_pair(path, [a], [b])
    n = x.shape[0]
    sizes = sorted(set(int(s) for s in (sizes or [max(n // 8, 64), max(n // 4, 64), max(n // 2, 64), n]) if s <= n))
    rows = []
    if uint8:
        qx, qy = to_uint8(x).reshape(n, -1), to_uint8(y).reshape(n, -1)
        for m in sizes:
            t0 = time.perf_counter()
            ha, hb = compressed_bits(qx[:m]) * LN2, compressed_bits(qy[:m]) * LN2
            hab = compressed_bits(np.concatenate([qx[:m], qy[:m]], axis=1)) * LN2
            rows.append({"estimator": "lzma", "n": m, "h_a": ha, "h_b": hb, "h_ab": hab, "mi": ha + hb - hab,
                         "time_s": time.perf_counter() - t0})
    else:
        fx, fy = x.reshape(n, -1), y.reshape(n, -1)
        for est in estimators:
            kw = (flow_settings or {}) if est == "flow" else {}
            for m in sizes:
                t0 = time.perf_counter()
                try:
                    ha, hb = entropy_of(fx[:m], est, seed, **kw), entropy_of(fy[:m], est, seed, **kw)
                    hab = entropy_of(np.concatenate([fx[:m], fy[:m]], axis=1), est, seed, **kw)
                    rows.append({"estimator": est, "n": m, "h_a": ha, "h_b": hb, "h_ab": hab, "mi": ha + hb - hab,
                                 "time_s": time.perf_counter() - t0})
                except ValueError as e:  # e.g. too few samples for a covariance: recorded, not raised
                    rows.append({"estimator": est, "n": m, "error": str(e)})
    return {"store": str(path), "a": a, "b": b, "uint8": uint8, "units": "nats", "truth_mi": truth,
            "truth_entropies": None if uint8 else true_entropies(str(path), a, b), "rows": rows}


def plot_check(result: dict, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    keys = [("h_a", f"Ĥ({result['a']})"), ("h_b", f"Ĥ({result['b']})"), ("h_ab", "Ĥ(joint)"), ("mi", "implied MI")]
    truth = result.get("truth_entropies") or {}
    for ax, (k, label) in zip(axes, keys):
        for est in dict.fromkeys(r["estimator"] for r in result["rows"]):
            rs = [r for r in result["rows"] if r["estimator"] == est and k in r]
            ax.plot([r["n"] for r in rs], [r[k] for r in rs], "o-", label=est)
        t = result["truth_mi"] if k == "mi" else truth.get(k.removeprefix("h_"))
        if t is not None:
            ax.axhline(t, color="k", ls="--", lw=0.8, label="exact" if k == "mi" or not result["uint8"] else None)
        ax.set_xscale("log")
        ax.set_xlabel("samples")
        ax.set_title(label + (" (uint8, LZMA)" if result["uint8"] else ""), fontsize=9)
    axes[0].set_ylabel("nats")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_check(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"entropy_{result['a']}_{result['b']}{'_uint8' if result['uint8'] else ''}"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    return out_dir / f"{stem}.json", plot_check(result, out_dir / f"{stem}.png")
