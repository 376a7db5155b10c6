"""What a trained set of encoders is worth, against the exact information of its store.

- **Linear probe** for θ from each requested set of representations (their concatenation): ridge
  regression in float64, its penalty chosen on the validation rows, test RMSE next to the Bayes
  floor σ_θ·e^(−I(θ; set)) — no predictor of θ from those modalities can do better, so a ratio
  RMSE / floor below 1 (beyond sampling error) would be a bug. The same probe on the raw standardised
  inputs is the baseline where the inputs are small enough (``raw_limit`` features).
- **InfoNCE bound** reached on the test rows for each requested pair, against the exact I(Xi; Xj)
  and the cap log(batch size).
- **MI between the representations** g_i(X_i), g_j(X_j) on the test rows (Gaussian with its exact
  sampling bias removed, and KSG): by data processing I(g_i(X_i); g_j(X_j)) ≤ I(X_i; X_j). An estimate
  above the exact value by more than ``tolerance`` nats plus three of its standard errors (a bootstrap
  over the test rows for the Gaussian estimate; KSG, whose error is downward at these dimensions, gets
  the tolerance alone) flags the run (``flags``): a leak between modalities, or the estimator's error.
  Likewise a probe whose RMSE is below the floor by more than three standard errors
  (RMSE·(2 n_test)^(−1/2), Gaussian residuals) is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mi_datagen.ssl.train import Encoders
from mi_datagen.store.truth import Truth

RIDGE_GRID = tuple(10.0 ** k for k in range(-4, 5))


@dataclass
class Evaluation:
    probes: list[dict] = field(default_factory=list)
    bounds: list[dict] = field(default_factory=list)
    representation_mi: list[dict] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def ridge_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray], grid: Sequence[float] = RIDGE_GRID) -> dict:
    """Ridge regression of y on standardised features (penalty λ·n_train on the grid, chosen by validation
    RMSE; fitted on the training rows); the test RMSE in y's units."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    mean, std = xtr.mean(0), xtr.std(0)
    std[std == 0] = 1.0
    xtr, xva, xte = ((x - mean) / std for x in (xtr, xva, xte))
    ym = ytr.mean()
    gram, rhs = xtr.T @ xtr, xtr.T @ (ytr - ym)
    eye = np.eye(gram.shape[0])
    best: tuple[float, float, np.ndarray] = (math.inf, 0.0, np.zeros(gram.shape[0]))
    for lam in grid:
        w = np.linalg.solve(gram + lam * len(ytr) * eye, rhs)
        v = float(np.sqrt(np.mean((xva @ w + ym - yva) ** 2)))
        if v < best[0]:
            best = (v, lam, w)
    w = best[2]
    return {"test_rmse": float(np.sqrt(np.mean((xte @ w + ym - yte) ** 2))), "val_rmse": best[0], "ridge": best[1]}


def _in_order(read, rows: np.ndarray) -> np.ndarray:
    """``read(sorted rows)`` as float64, put back in the order of ``rows`` (stores read sorted selections)."""
    return np.asarray(read(np.sort(rows)), dtype=np.float64).reshape(len(rows), -1)[np.argsort(np.argsort(rows))]


def evaluate(enc: Encoders, truth: Truth | None = None, probes: Sequence[Sequence[str]] | None = None,
             pairs: Sequence[tuple[str, str]] | None = None, raw_limit: int = 4096, tolerance: float = 0.1,
             ksg_k: int = 3, boots: int = 100) -> Evaluation:
    """Probe, bound and representation-MI figures of ``enc`` on its own test rows (see the module).
    ``probes``: sets of modalities (default: each modality, then all); ``pairs``: modality pairs (default:
    the first two)."""
    from mi_datagen.estimators.baselines import gaussian_mi, ksg_mi

    store = enc.dataset.store
    truth = truth or Truth(store)
    mods = enc.modalities
    probes = [list(p) for p in (probes or [[m] for m in mods] + [mods])]
    pairs = [(p[0], p[1]) for p in (pairs or [(mods[0], mods[1])])]
    unknown = sorted({m for p in [*probes, *pairs] for m in p} - set(mods))
    if unknown:
        from mi_datagen.errors import ConfigError

        raise ConfigError(f"ssl: probes/pairs name {unknown}, which were not trained on; trained: {mods}")
    rows = {"train": enc.train_rows, "val": enc.val_rows, "test": enc.test_rows}
    emb = {k: enc.embed(r) for k, r in rows.items()}
    theta = {k: _in_order(store.theta, r)[:, 0] for k, r in rows.items()}
    dims = {m: getattr(enc, f"mean_{m}").numel() for m in mods}  # the standardisation buffers have each shape
    raw: dict[str, dict[str, np.ndarray]] = {}  # modality -> split -> flattened inputs, read once

    def raw_inputs(names: Sequence[str], split: str) -> np.ndarray:
        for m in names:
            if m not in raw:
                raw[m] = {k: _in_order(lambda r, m=m: store.images(m, r), rows[k]) for k in rows}
        return np.concatenate([raw[m][split] for m in names], axis=1)

    ev = Evaluation()
    for names in probes:
        feats = {k: np.concatenate([emb[k][m] for m in names], axis=1) for k in rows}
        res = ridge_probe((feats["train"], theta["train"]), (feats["val"], theta["val"]),
                          (feats["test"], theta["test"]))
        floor = truth.rmse_floor(names)
        se = res["test_rmse"] / math.sqrt(2 * len(rows["test"]))
        rec = {"inputs": names, "mi_theta": truth.mi([store.target], names), "floor": floor,
               "theta_std": truth.theta_std, **res, "rmse_se": se, "ratio": res["test_rmse"] / floor}
        if res["test_rmse"] < floor - 3 * se:
            ev.flags.append(f"probe θ ← {'+'.join(names)}: test RMSE {res['test_rmse']:.4f} is below the Bayes floor "
                            f"{floor:.4f} by more than three standard errors ({se:.4f})")
        if sum(dims[m] for m in names) <= raw_limit:
            xr = {k: raw_inputs(names, k) for k in rows}
            base = ridge_probe((xr["train"], theta["train"]), (xr["val"], theta["val"]), (xr["test"], theta["test"]))
            rec.update(raw_test_rmse=base["test_rmse"], raw_ratio=base["test_rmse"] / floor)
        ev.probes.append(rec)
    b = enc.settings.batch_size
    for a, c in pairs:
        exact = truth.mi([a], [c])
        ev.bounds.append({"a": a, "b": c, "bound": enc.bound(emb["test"], a, c, b), "exact": exact,
                          "cap": math.log(b), "batch_size": b})
        x, y = emb["test"][a], emb["test"][c]
        est = {"gaussian": gaussian_mi(x, y, unbiased=True), "ksg": ksg_mi(x, y, ksg_k)}
        rng = np.random.default_rng(enc.seed)
        boot = [gaussian_mi(x[i], y[i], unbiased=True) for i in (rng.integers(0, len(x), len(x)) for _ in range(boots))]
        se = {"gaussian": float(np.std(boot, ddof=1)) if boots > 1 else 0.0, "ksg": 0.0}
        ev.representation_mi.append({"a": a, "b": c, "exact": exact, **est, "gaussian_se": se["gaussian"], "n": len(x)})
        for name, v in est.items():
            margin = tolerance + 3 * se[name]
            if v > exact + margin:
                ev.flags.append(f"I(g({a}); g({c})) by {name} = {v:.4f} exceeds the exact I({a}; {c}) = {exact:.4f} "
                                f"by more than {margin:.4f} nats")
    return ev
