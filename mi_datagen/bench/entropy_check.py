"""``mi-datagen entropy-check``: Ĥ(X_a), Ĥ(X_b), Ĥ(X_a, X_b) and the MI they imply, next to the truth.

Truth: the exact MI from the manifest; entropies from the manifest's ``image_entropies`` (generate
with ``--entropy-samples``), or exact for flow-less modalities (latent entropy + standardisation
log-det). ``uint8=True`` checks the 8-bit export instead: values clamped to [−1, 1] and rounded,
so entropies are discrete and a compression code length (LZMA) applies directly; its MI is
bounded by the float store's (data processing). What the export destroys is measured through the
exact inverse (``bench.quantise``): the latent perturbation, the clamped fraction, and the MI the
perturbation model leaves; the export's exact entropies are given in the fine-quantisation limit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mi_datagen.bench.quantise import discrete_entropy_fine, quantisation_effect, to_uint8
from mi_datagen.estimators.entropy import compressed_bits, entropy_of
from mi_datagen.estimators.pairs import load_pair
from mi_datagen.store.config import GenerateConfig
from mi_datagen.store.store import Store

LN2 = np.log(2.0)


def image_entropy_records(store: Store, samples: int, terms: int = GenerateConfig.entropy_terms,
                          probes: int = GenerateConfig.entropy_probes):
    """h(X_i), h(X_i, X_j) of a store made without ``--entropy-samples``, computed now exactly as generation
    would have (flow log-dets on ``samples`` samples, ``terms`` series terms and ``probes`` Hutchinson probes,
    generation's defaults). Nothing is written: ``mi-datagen add-entropies`` records them in the manifest, as its
    own explicit step."""
    from mi_datagen.store.job import GenerationJob

    job = GenerationJob.from_store(store, entropy_samples=samples, entropy_terms=terms, entropy_probes=probes)
    return job.image_entropies_estimate()


def true_entropies(store: Store, a: str, b: str, samples: int = 0, records=None,
                   terms: int = GenerateConfig.entropy_terms,
                   probes: int = GenerateConfig.entropy_probes) -> dict[str, float | None] | None:
    """h(X_a), h(X_b), h(X_a, X_b): from the manifest, from ``records``, or (``samples`` > 0, a store made
    without ``--entropy-samples``) computed now without writing anything (``terms``, ``probes``: as
    ``image_entropy_records``)."""
    man = store.manifest
    records = records if records is not None else man.image_entropies
    if not records and samples > 0 and any(m.flow is not None for m in man.modalities):
        records = image_entropy_records(store, samples, terms, probes)
    rec = {tuple(r.nodes): r.nats for r in records}
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


def true_entropy_stderrs(records, a: str, b: str) -> dict[str, float | None] | None:
    """Standard errors of the flow-log-det entropy estimates (None where the truth is exact)."""
    rec = {tuple(r.nodes): r.stderr for r in records}
    if not rec:
        return None
    return {"a": rec.get((a,)), "b": rec.get((b,)), "ab": rec.get((a, b), rec.get((b, a)))}


def entropy_check(path: str, a: str, b: str, estimators=("gaussian", "kl"), sizes=None, seed: int = 0,
                  uint8: bool = False, flow_settings: dict | None = None,
                  n_check: int = 8, truth_samples: int = 0, progress: bool = False) -> dict:
    """Ĥ(Xa) + Ĥ(Xb) − Ĥ(Xa,Xb) per estimator and sample size, next to the exact MI. Reads the store only."""
    store = path if isinstance(path, Store) else Store(path)
    path = store.path
    x, y, truth = load_pair(store, [a], [b])
    n = x.shape[0]
    sizes = sorted(set(int(s) for s in (sizes or [max(n // 8, 64), max(n // 4, 64), max(n // 2, 64), n]) if s <= n))
    rows = []
    fits = [("lzma", m) for m in sizes] if uint8 else [(est, m) for est in estimators for m in sizes]
    bar = tqdm(fits, desc="entropy-check", unit="fit", disable=not progress)
    if uint8:
        qx, qy = to_uint8(x).reshape(n, -1), to_uint8(y).reshape(n, -1)
        for _, m in bar:
            bar.set_postfix_str(f"lzma n={m}")
            t0 = time.perf_counter()
            ha, hb = compressed_bits(qx[:m]) * LN2, compressed_bits(qy[:m]) * LN2
            hab = compressed_bits(np.concatenate([qx[:m], qy[:m]], axis=1)) * LN2
            rows.append({"estimator": "lzma", "n": m, "h_a": ha, "h_b": hb, "h_ab": hab, "mi": ha + hb - hab,
                         "time_s": time.perf_counter() - t0})
    else:
        fx, fy = x.reshape(n, -1), y.reshape(n, -1)
        for est, m in bar:
            bar.set_postfix_str(f"{est} n={m}")
            kw = {"progress": progress, **(flow_settings or {})} if est.startswith("flow") else {}
            t0 = time.perf_counter()
            try:
                ha, hb = entropy_of(fx[:m], est, seed, **kw), entropy_of(fy[:m], est, seed, **kw)
                hab = entropy_of(np.concatenate([fx[:m], fy[:m]], axis=1), est, seed, **kw)
                rows.append({"estimator": est, "n": m, "h_a": ha, "h_b": hb, "h_ab": hab, "mi": ha + hb - hab,
                             "time_s": time.perf_counter() - t0})
            except ValueError as e:  # e.g. too few samples for a covariance: recorded, not raised
                rows.append({"estimator": est, "n": m, "error": str(e)})
    if truth_samples > 0 and progress:
        tqdm.write(f"entropy-check: exact entropies from {truth_samples} flow log-dets per modality (if not in the manifest)")
    records = store.manifest.image_entropies
    if not records and truth_samples > 0 and any(m.flow is not None for m in store.manifest.modalities):
        records = image_entropy_records(store, truth_samples)
    truth_h = true_entropies(store, a, b, records=records)
    res = {"store": str(path), "a": a, "b": b, "uint8": uint8, "units": "nats", "truth_mi": truth,
           "truth_entropies": truth_h, "truth_entropies_stderr": true_entropy_stderrs(records, a, b), "rows": rows}
    if uint8:
        d = {k: int(np.prod(v.shape[1:])) for k, v in (("a", x), ("b", y))}
        d["ab"] = d["a"] + d["b"]
        res["truth_entropies"] = None if truth_h is None or None in truth_h.values() else {
            k: discrete_entropy_fine(float(h), d[k]) for k, h in truth_h.items() if h is not None}
        res["truth_entropies_note"] = "uint8: fine-quantisation limit H(U) = h(X) + d·log 127.5 (clamping ignored)"
        q = quantisation_effect(store, n_check)
        res["quantisation"] = q
        res["uint8_model_mi"] = next((r["uint8_model_nats"] for r in q["mi"]
                                      if {tuple(r["a"]), tuple(r["b"])} == {(a,), (b,)}), None)
    return res


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
            se = None if k == "mi" else (result.get("truth_entropies_stderr") or {}).get(k.removeprefix("h_"))
            if se:  # the flow log-det estimate of an exactly defined entropy: ± 1 standard error
                ax.axhspan(t - se, t + se, color="k", alpha=0.12, lw=0)
        sizes = sorted({r["n"] for r in result["rows"]})
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes], fontsize=7)
        ax.minorticks_off()
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
