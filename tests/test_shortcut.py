"""The shortcut check finds MI that sits in brightness, and not MI carried by a high-frequency pattern.
(A random pattern sits in between: its share of the lowest frequencies leaks ≈ 25 % of the MI.)"""

import numpy as np

from mi_datagen.bench.shortcut import shortcut_check, trivial_statistics


def pair(template: np.ndarray, rho: float, n: int = 3000, seed: int = 0):
    """x = ρ·u·T + ε, y = ρ·u·T + ε' with unit-norm T (3×8×8): exact I = ½ log(1 + 2ρ²... ) below."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n)
    t = template / np.linalg.norm(template)
    shared = rho * u[:, None] * t.reshape(1, -1)
    x = (shared + rng.standard_normal((n, t.size))).reshape(n, 3, 8, 8)
    y = (shared + rng.standard_normal((n, t.size))).reshape(n, 3, 8, 8)
    r = rho ** 2 / (1 + rho ** 2)  # correlation of the projections on T
    return x, y, -0.5 * np.log(1 - r ** 2)


def test_statistics_shape_and_values():
    x = np.zeros((2, 3, 8, 8))
    x[1] += 2.0
    s = trivial_statistics(x)
    assert s.shape == (2, 3 + 2 * 3 * 3)
    assert np.allclose(s[1, :3], 2.0) and np.allclose(s[:, 3:], 0.0)  # a constant image has no low frequency


def test_brightness_carries_the_mi_and_a_high_frequency_pattern_does_not():
    x, y, truth = pair(np.ones((3, 8, 8)), rho=3.0)
    res = shortcut_check(x, y, truth, n=3000)
    assert res["share"] > 0.7, res  # the `ones` template is brightness: the shortcut gets most of it
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    checker = np.broadcast_to((-1.0) ** (i + j), (3, 8, 8))  # all its energy at the highest frequency
    x, y, truth = pair(checker, rho=3.0)
    res = shortcut_check(x, y, truth, n=3000)
    assert res["share"] < 0.2, res


def test_the_shuffled_pair_null_is_the_estimators_own_bias():
    """On independent pairs the Gaussian estimate on 21 + 21 statistics of 2 000 rows is biased up by
    ≈ dx·dy / 2n = 0.11 nats (the Wishart bias of the log-determinants); the shuffled-pair null sees the same
    bias, so what is left above it is within the estimators' noise (KSG ± 0.03 on 2 000 rows) of zero."""
    x, y, _ = pair(np.ones((3, 8, 8)), rho=0.0, n=2000)
    res = shortcut_check(x, y, 0.0, n=2000)
    gauss = "Gaussian on means + low frequencies"
    assert 0.06 < res["estimates"][gauss] < 0.16 and abs(res["null"][gauss] - res["estimates"][gauss]) < 0.04, res
    assert set(res["null"]) == set(res["estimates"]) and abs(res["above_null"]) < 0.05, res
    assert res["share"] is None and res["share_above_null"] is None  # no share of a zero MI


def test_at_low_mi_the_raw_share_is_the_bias_and_the_share_above_null_is_the_information():
    """Brightness carries all of a 0.02-nat MI: the raw share is several times the truth (the Gaussian bias
    alone is 0.11 nats), while the best estimate above its own null is within the KSG noise of the truth."""
    x, y, truth = pair(np.ones((3, 8, 8)), rho=0.5, n=2000)
    assert abs(truth - 0.0204) < 1e-3
    res = shortcut_check(x, y, truth, n=2000)
    assert res["share"] > 4, res
    assert abs(res["above_null"] - truth) < 0.03, res
    assert res["share_above_null"] == res["above_null"] / truth


def test_cli_shortcut_prints_the_null_and_writes_it(tiny_dir, tmp_path):
    """`mi-datagen shortcut` on a store: each estimate beside its shuffled-pair figure, and a summary line whose
    numbers are those of the JSON record (the largest estimate; the largest estimate − null)."""
    import json

    from typer.testing import CliRunner

    from mi_datagen.cli import app

    runner, store = CliRunner(), tmp_path / "s.zarr"
    r = runner.invoke(app, ["generate", str(tiny_dir / "tiny.yaml"), "-n", "256", "--out", str(store),
                            "--workers", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["shortcut", str(store), "--n", "256", "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "s.json").read_text())
    ests, nulls = rec["estimates"], rec["null"]
    assert set(nulls) == set(ests) and rec["n"] == 256
    assert rec["max_nats"] == max(ests.values())
    assert rec["above_null"] == max(ests[k] - nulls[k] for k in ests)
    text = " ".join(r.output.split())
    assert "shuffled pairs" in text and "above the shuffled-pair null" in text and f"{rec['above_null']:.3f}" in text

    # `inspect --shortcut`: the pairs the suites ask about, θ; X1 and X1; X2, each with its exact MI from the manifest
    from mi_datagen.bench.shortcut import store_shortcuts
    from mi_datagen.store.store import Store

    exact = {(tuple(m.a), tuple(m.b)): m.nats for m in Store(str(store)).manifest.info.mutual_information if not m.given}
    recs = store_shortcuts(str(store), n=2000)
    assert [(r["a"], r["b"]) for r in recs] == [(["theta"], ["X1"]), (["X1"], ["X2"])]
    assert [r["truth"] for r in recs] == [exact[("theta",), ("X1",)], exact[("X1",), ("X2",)]]
    assert recs[1]["estimates"] == rec["estimates"]  # all 256 rows either way: the same numbers as the command
    r = runner.invoke(app, ["inspect", str(store), "--shortcut"], terminal_width=250)
    assert r.exit_code == 0, r.output
    assert "shortcut check" in r.output and "I(theta; X1)" in r.output
    from mi_datagen.cli._common import fmt

    assert fmt(recs[1]["above_null"]) in r.output and fmt(recs[1]["truth"]) in r.output
