"""Your own estimator in the harness (docs/benchmark-your-estimator.md): the how-to runs end to end, a
Python callable and the same estimator as a command give identical numbers, and misuse is one line."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mi_datagen.bench.suite import load_suite, with_estimators
from mi_datagen.cli import app
from mi_datagen.errors import EstimatorError, SpecError
from mi_datagen.estimators.external import estimate_external

ROOT = Path(__file__).resolve().parents[1]
HOWTO = ROOT / "benchmarks" / "suites" / "howto.yaml"


def test_the_howto_runs_end_to_end(tmp_path):
    out = tmp_path / "howto"
    r = CliRunner().invoke(app, ["bench", str(HOWTO), "--out", str(out), "--threads", "1",
                                 "--estimator", "mi_datagen.estimators.examples:heldout_gaussian"])
    assert r.exit_code == 0, r.output
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(runs) == 3 * 4 * 3 and all(x["status"] == "ok" for x in runs)  # datasets × estimators × seeds
    by = {(x["dataset"], x["estimator"], x["seed"]): x for x in runs}
    for (ds, est, seed), x in by.items():
        if est == "heldout-gaussian (callable)":
            # the same estimator through the command-line protocol and through --estimator: same split, same number
            assert by[(ds, "heldout-gaussian (command)", seed)]["estimate"] == x["estimate"]
            assert by[(ds, "heldout_gaussian", seed)]["estimate"] == x["estimate"]
            # Gaussian data (no flows): the held-out Gaussian is within its finite-sample bias of the truth
            assert abs(x["estimate"] - x["truth"]) < 0.2, x
            assert x["settings"]["extras"]["stderr"] > 0  # extras returned by the estimator are recorded
    report = (out / "report.md").read_text()
    assert "## Per MI level" in report and "95 % intervals" in report and "## Shortcut check" in report
    assert len(list((out / "shortcuts").glob("*.json"))) == 3  # once per dataset and pair, not per run
    for sc in (json.loads(p.read_text()) for p in (out / "shortcuts").glob("*.json")):  # each row with its null
        assert f"| {sc['dataset']} | X1; X2 | {sc['truth']:.3f} | {sc['max_nats']:.3f} | {sc['share']:.0%} | " \
               f"{sc['above_null']:.3f} | {sc['share_above_null']:.0%} | {sc['n']} |" in report, sc
    from mi_datagen.bench.report import load_runs, per_level, summarise

    for row in per_level(load_runs(out)):  # the bias/variance split, from the records alone
        est = [x["estimate"] for x in runs if x["estimator"] == row["estimator"] and x["dataset"] == row["dataset"]]
        assert row["seeds"] == 3 and row["mse"] == pytest.approx(row["bias"] ** 2 + row["variance"], rel=1e-9, abs=1e-15)
        assert row["mean"] == pytest.approx(np.mean(est), rel=1e-12)
    for s in summarise(load_runs(out)).values():
        assert s["rmse_ci"][0] <= s["rmse"] + 1e-12 and s["rmse"] - 1e-12 <= s["rmse_ci"][1]


def _cmd(body: str) -> str:
    return f"{sys.executable} -c \"{body}\""


def test_external_estimator_errors_are_one_line(tmp_path):
    x, y = np.random.default_rng(0).standard_normal((2, 100, 3))
    with pytest.raises(EstimatorError, match="cannot import 'no_such_module'"):
        estimate_external(x, y, callable="no_such_module:fn")
    with pytest.raises(EstimatorError, match="write it as package.module:name"):
        estimate_external(x, y, callable="justaname")
    with pytest.raises(EstimatorError, match="exactly one of `callable` or `command`"):
        estimate_external(x, y)
    with pytest.raises(EstimatorError, match="not a number of nats"):
        estimate_external(x, y, command=_cmd("print('hello')"))
    with pytest.raises(EstimatorError, match="exited with 3: boom"):
        estimate_external(x, y, command=_cmd("import sys; sys.stderr.write('boom'); sys.exit(3)"))
    res = estimate_external(x, y, command=_cmd("import sys, json; print(json.dumps({'nats': 0.5, 'k': 1}))"))
    assert res.nats == 0.5 and res.settings["extras"] == {"k": 1} and res.n_train + res.n_test == 100


def test_suite_entries_for_external_estimators_are_checked(tmp_path):
    suite = load_suite(HOWTO)
    with pytest.raises(SpecError, match="names .* are used twice"):
        with_estimators(suite, ["pkg_a.mod:mine", "pkg_b.mod:mine"])  # both would be named "mine"
    bad = tmp_path / "s.yaml"
    bad.write_text(HOWTO.read_text().replace(', callable: "mi_datagen.estimators.examples:heldout_gaussian"', ""))
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "howto.yaml").write_text((HOWTO.parent / "specs" / "howto.yaml").read_text())
    with pytest.raises(SpecError, match="method external needs exactly one of `callable`"):
        load_suite(bad)
