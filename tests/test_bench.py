"""The estimator harness on a tiny suite: runs, recorded failures, aggregation, report, resume."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from mi_datagen.bench.report import load_runs, summarise
from mi_datagen.bench.ssl_suite import load_ssl_suite
from mi_datagen.bench.suite import load_suite, run_suite
from mi_datagen.errors import SpecError

from .test_dataset import PLAIN

torch.set_num_threads(1)

SUITE = """\
name: tiny
description: harness test
datasets:
  - spec: plain.yaml
    n: 800
    images: true
    pairs: [[[X1], [X2]], [[theta], [X1]]]
    generate: {shard_size: 256, chunk_size: 64, tile: 8}
estimators:
  - {name: NWJ, method: nwj, settings: {steps: 60}}
  - {name: Gaussian, method: gaussian}
  - {name: TooBig, method: dv, settings: {batch_size: 4096}}
regression: {target: theta, inputs: [X1], settings: {steps: 40}}
seeds: [0, 1]
reference: {NWJ: [0.996, 0.085]}
"""


@pytest.fixture
def suite_dir(tmp_path):
    (tmp_path / "plain.yaml").write_text(PLAIN)
    (tmp_path / "tiny.yaml").write_text(SUITE)
    return tmp_path


def test_tiny_suite_runs_records_failures_and_aggregates(suite_dir):
    out = run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    runs = load_runs(out)
    assert len(runs) == 2 * 3 * 2 + 2  # pairs × estimators × seeds + regression × seeds
    failed = [r for r in runs if r["status"] != "ok"]
    assert len(failed) == 4 and all(r["estimator"] == "TooBig" for r in failed)
    assert all("fewer than batch_size 4096" in r["error"] for r in failed)
    ok = [r for r in runs if r["status"] == "ok" and r["kind"] == "estimate"]
    truths = {(tuple(r["a"]), tuple(r["b"])): r["truth"] for r in ok}
    assert truths[(("X1",), ("X2",))] > 0 and truths[(("theta",), ("X1",))] > 0
    # the aggregate is what the per-run records say
    s = summarise(runs)
    nwj = [r for r in ok if r["estimator"] == "NWJ"]
    est, tru = np.array([r["estimate"] for r in nwj]), np.array([r["truth"] for r in nwj])
    assert s["NWJ"]["rmse"] == pytest.approx(math.sqrt(np.mean((est - tru) ** 2)), rel=1e-12)
    assert s["NWJ"]["bias"] == pytest.approx(np.mean(est - tru), rel=1e-12)
    assert s["NWJ"]["corr"] == pytest.approx(np.corrcoef(est, tru)[0, 1], rel=1e-12)
    per = {}
    for r in nwj:
        per.setdefault(tuple(r["a"]), []).append(r["estimate"])
    assert s["NWJ"]["std"] == pytest.approx(np.mean([np.std(v, ddof=1) for v in per.values()]), rel=1e-12)
    assert s["TooBig"]["failed"] == 4 and s["TooBig"]["runs"] == 4
    # the Gaussian baseline is close on these Gaussian data (d = 4, n = 800)
    g = [r for r in ok if r["estimator"] == "Gaussian"]
    assert all(abs(r["estimate"] - r["truth"]) < 0.1 for r in g)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == len(runs) and {r["status"] for r in rows} == {"ok", "failed"}
    report = (out / "report.md").read_text()
    assert "| NWJ | nwj | 4 | 0 |" in report and "0.996 / 0.085" in report and "## Failed runs" in report
    assert "## θ-regression" in report and "runs on 1 dataset (" in report
    # the per-dataset table: one row per (dataset, pair), the mean over seeds per estimator
    row = next(line for line in report.splitlines() if line.startswith("| plain | X1; X2 |"))
    xy = [r for r in nwj if r["a"] == ["X1"]]
    assert f"| {xy[0]['truth']:.3f} |" in row and f"| {np.mean([r['estimate'] for r in xy]):.3f} |" in row
    for png in ("estimate_vs_truth.png", "training_curves.png", "regression.png"):
        assert (out / png).stat().st_size > 1000
    reg = [r for r in runs if r["kind"] == "regression"]
    assert all(r["status"] == "ok" and r["estimate"] >= 0 and r["floor"] > 0 for r in reg)
    # runs moved elsewhere: the report leaves no stale plot behind
    from mi_datagen.bench.report import write_report

    for f in (out / "runs").glob("*.json"):
        f.unlink()
    write_report(out, load_suite(suite_dir / "tiny.yaml"))
    assert not list(out.glob("*.png")) and "0 runs on 0 datasets" in (out / "report.md").read_text()


def test_rerun_skips_finished_runs_and_retries_failed(suite_dir):
    out = run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    ok = out / "runs" / "plain__X1-X2__NWJ__s0.json"
    bad = out / "runs" / "plain__X1-X2__TooBig__s0.json"
    before_ok, before_bad = ok.stat().st_mtime_ns, bad.stat().st_mtime_ns
    run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    assert ok.stat().st_mtime_ns == before_ok and bad.stat().st_mtime_ns > before_bad
    assert json.loads(ok.read_text())["status"] == "ok"


def test_a_missing_shortcut_record_is_made_from_the_complete_store_without_redoing_runs(suite_dir):
    """A pair whose runs all finished before its check existed (or whose record was deleted): the rerun makes it from the store —
    the same bytes, seeded — and touches no run record."""
    (suite_dir / "ok.yaml").write_text(SUITE.replace("  - {name: TooBig, method: dv, settings: {batch_size: 4096}}\n", ""))
    out = run_suite(suite_dir / "ok.yaml", suite_dir / "out", progress=False)
    runs = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    lost, kept = out / "shortcuts" / "plain__theta-X1__shortcut__s0.json", out / "shortcuts" / "plain__X1-X2__shortcut__s0.json"
    lost_bytes, before_kept = lost.read_bytes(), kept.stat().st_mtime_ns
    lost.unlink()
    run_suite(suite_dir / "ok.yaml", suite_dir / "out", progress=False)
    assert lost.read_bytes() == lost_bytes and kept.stat().st_mtime_ns == before_kept
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == runs and len(runs) == 2 * 2 * 2 + 2


def test_edited_suite_redoes_only_the_runs_it_changes(suite_dir):
    """A stored run is reused only while the suite asks for the same thing: new settings for one estimator, or a
    new store size, redo the runs they touch (a result made on 800 samples is not reported as one made on 600)."""
    out = run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    nwj, gauss = out / "runs" / "plain__X1-X2__NWJ__s0.json", out / "runs" / "plain__X1-X2__Gaussian__s0.json"
    t_nwj, t_gauss = nwj.stat().st_mtime_ns, gauss.stat().st_mtime_ns
    (suite_dir / "tiny.yaml").write_text(SUITE.replace("settings: {steps: 60}", "settings: {steps: 61}"))
    run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    assert nwj.stat().st_mtime_ns > t_nwj and gauss.stat().st_mtime_ns == t_gauss
    assert json.loads(nwj.read_text())["config"]["settings"] == {"steps": 61}
    # a record written before `config` was stored is compared on what it holds
    rec = json.loads(gauss.read_text())
    del rec["config"]
    gauss.write_text(json.dumps(rec))
    t_gauss = gauss.stat().st_mtime_ns
    run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    assert gauss.stat().st_mtime_ns == t_gauss
    (suite_dir / "tiny.yaml").write_text(SUITE.replace("n: 800", "n: 600").replace("{steps: 60}", "{steps: 61}"))
    run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    assert json.loads(gauss.read_text())["n"] == 600 and json.loads(nwj.read_text())["n"] == 600


def test_suite_errors(suite_dir):
    (suite_dir / "bad.yaml").write_text(SUITE.replace("seeds: [0, 1]", "seeds: [0, 1]\ncolour: red"))
    with pytest.raises(SpecError, match="colour: Extra inputs are not permitted"):
        load_suite(suite_dir / "bad.yaml")
    (suite_dir / "dup.yaml").write_text(SUITE.replace("name: Gaussian", "name: NWJ"))
    with pytest.raises(SpecError, match=r"names \['NWJ'\] are used twice"):
        load_suite(suite_dir / "dup.yaml")
    (suite_dir / "gen.yaml").write_text(SUITE.replace("tile: 8}", "tile: 8, speed: 3}"))
    with pytest.raises(SpecError, match=r"generate: unknown options \['speed'\]"):
        load_suite(suite_dir / "gen.yaml")
    with pytest.raises(SpecError, match="no such suite file"):
        load_suite(suite_dir / "missing.yaml")
    # a typo in an estimator's settings is refused at load, naming the estimator and the valid keys
    (suite_dir / "typo.yaml").write_text(SUITE.replace("settings: {steps: 60}", "settings: {stpes: 60}"))
    with pytest.raises(SpecError, match=r"estimator 'NWJ': unknown settings \['stpes'\]; valid keys: .*'steps'"):
        load_suite(suite_dir / "typo.yaml")
    (suite_dir / "rtypo.yaml").write_text(SUITE.replace("settings: {steps: 40}", "settings: {step: 40}"))
    with pytest.raises(SpecError, match=r"regression: unknown settings \['step'\]; valid keys: .*'steps'"):
        load_suite(suite_dir / "rtypo.yaml")


def test_load_pair_any_sets_from_a_store(suite_dir):
    from mi_datagen.api import load_and_expand, solver_for
    from mi_datagen.estimators.pairs import load_pair
    from mi_datagen.store.generate import GenerateConfig, generate
    from mi_datagen.store.zarr_store import StoreError

    spec = load_and_expand(suite_dir / "plain.yaml")[0]
    out = suite_dir / "p.zarr"
    generate(spec, out, GenerateConfig(n=64, shard_size=32, chunk_size=32, tile=8, progress=False), suite_dir)
    x, y, truth = load_pair(str(out), ["X1", "X2"], ["theta"])
    assert x.shape == (64, 2, 2, 2) and y.shape == (64, 1) and x.dtype == np.float32
    assert truth == pytest.approx(solver_for(spec).mi(["X1", "X2"], ["theta"]), rel=1e-12)
    with pytest.raises(StoreError, match="'c' is not stored"):
        load_pair(str(out), ["c"], ["X1"])


def test_suite_regenerates_a_store_of_another_job(suite_dir):
    """A complete store of another job (here the spec changed) is regenerated, never reused or mixed."""
    out = run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    store = next((out / "stores").glob("*.zarr"))
    from mi_datagen.store.zarr_store import read_manifest

    first = read_manifest(str(store)).info.spec_sha256
    (suite_dir / "plain.yaml").write_text(PLAIN.replace("coef: 0.8", "coef: 0.9"))
    for f in (out / "runs").glob("*.json"):
        f.unlink()
    run_suite(suite_dir / "tiny.yaml", suite_dir / "out", progress=False)
    assert read_manifest(str(store)).info.spec_sha256 != first and read_manifest(str(store)).complete


def test_generate_only_prepares_a_shared_store_folder(suite_dir):
    """`bench --generate-only` makes the suite's stores in its `stores` folder and runs nothing; a
    second suite naming the same folder reuses them (same job ⇒ same store, not regenerated)."""
    from typer.testing import CliRunner

    from mi_datagen.cli import app

    shared = suite_dir / "shared"
    (suite_dir / "a.yaml").write_text(SUITE.replace("seeds: [0, 1]", f"seeds: [0]\nstores: {shared}"))
    r = CliRunner().invoke(app, ["bench", str(suite_dir / "a.yaml"), "--out", str(suite_dir / "outa"),
                                 "--generate-only"])
    assert r.exit_code == 0, r.output
    assert "stores ready for tiny" in r.output
    store = shared / "plain-n800-s0.zarr"
    assert (store / "manifest.json").is_file() and not list((suite_dir / "outa" / "runs").glob("*.json"))
    stamp = (store / "manifest.json").stat().st_mtime_ns
    out = run_suite(suite_dir / "a.yaml", suite_dir / "outb", progress=False)
    runs = load_runs(out)
    assert runs and all(r["store"] == str(store) for r in runs if r["status"] == "ok")
    assert (store / "manifest.json").stat().st_mtime_ns == stamp and not (suite_dir / "outb" / "stores").exists()


def test_existing_only_runs_on_complete_stores_and_leaves_the_rest(suite_dir):
    """--existing-only: datasets without a complete store of this job are left for later (no record),
    never generated and never recorded as failed; the finished ones run as usual."""
    two = SUITE.replace("  - spec: plain.yaml\n", "  - spec: plain.yaml\n    seed: 3\n", 1)
    two = two.replace("datasets:\n", "datasets:\n  - spec: plain.yaml\n    n: 800\n    images: true\n"
                                     "    pairs: [[[X1], [X2]]]\n    generate: {shard_size: 256, chunk_size: 64, tile: 8}\n")
    (suite_dir / "two.yaml").write_text(two.replace("seeds: [0, 1]", "seeds: [0]"))
    out = suite_dir / "out2"
    run_suite(suite_dir / "two.yaml", out, progress=False, existing_only=True)
    assert not list((out / "runs").glob("*.json")) and not (out / "stores").exists()
    run_suite(suite_dir / "two.yaml", out, progress=False, generate_only=True)
    store = out / "stores" / "plain-n800-s3.zarr"
    import shutil

    shutil.rmtree(store)  # only the seed-0 dataset is complete now
    run_suite(suite_dir / "two.yaml", out, progress=False, existing_only=True)
    runs = load_runs(out)
    assert runs and {r["store"] for r in runs if r["status"] == "ok"} == {str(out / "stores" / "plain-n800-s0.zarr")}
    assert not store.exists()


def test_datasets_selects_by_name_or_suffix_in_the_given_order():
    from types import SimpleNamespace

    from mi_datagen.bench.suite import select

    jobs = [(None, SimpleNamespace(name=f"sweep_{i:02d}")) for i in range(4)]
    assert [m.name for _, m in select(jobs, ["03", "sweep_00", "03"])] == ["sweep_03", "sweep_00"]
    assert select(jobs, None) == jobs
    with pytest.raises(SpecError, match=r"'07' names no dataset of this suite.*sweep_00.*suffixes"):
        select(jobs, ["07"])


def test_bench_datasets_option_runs_only_the_named_ones(suite_dir):
    """`bench --datasets`: an unknown name is refused before anything runs; a known one runs."""
    from typer.testing import CliRunner

    from mi_datagen.cli import app

    (suite_dir / "one.yaml").write_text(SUITE.replace("seeds: [0, 1]", "seeds: [0]"))
    r = CliRunner().invoke(app, ["bench", str(suite_dir / "one.yaml"), "--out", str(suite_dir / "o"),
                                 "--datasets", "other"])
    assert r.exit_code != 0 and "'other' names no dataset of this suite" in r.output
    assert not (suite_dir / "o" / "stores").exists()
    out = run_suite(suite_dir / "one.yaml", suite_dir / "o", progress=False, datasets=["plain"])
    assert {r["dataset"] for r in load_runs(out)} == {"plain"}


def test_shipped_suites_load_and_their_datasets_expand():
    """Every suite in benchmarks/suites validates and names specs that expand; table1 is the sweep of docs/examples.md
    (1) as the paper ran it (unstandardised), table1-standardised the standardised one, on the same ten MI levels."""
    from pathlib import Path

    from mi_datagen.api import load_and_expand
    from mi_datagen.assets import DEFAULT_FLOW

    root = Path(__file__).resolve().parent.parent / "benchmarks" / "suites"
    members = {}
    for path in sorted(root.glob("*.yaml")):
        if path.name.startswith("ssl-"):
            with pytest.raises(SpecError, match="an SSL suite"):
                load_suite(path)
            suite = load_ssl_suite(path)
        else:
            suite = load_suite(path)
        members[suite.name] = [m for e in suite.datasets for m in load_and_expand(path.parent / e.spec)]
        assert members[suite.name], path
    assert {"table1", "table1-standardised", "theta-regression", "latents", "latents-ci", "multimodal",
            "ssl-table1", "ssl-table1-latents", "ssl-multimodal", "ssl-multimodal-latents"} <= set(members)
    assert [m.name for m in members["ssl-table1"]] == [m.name for m in members["table1-standardised"]]
    raw, std = members["table1"], members["table1-standardised"]
    assert len(raw) == len(std) == 10
    assert not any(x.standardize for m in raw for x in m.modalities)
    assert all(x.standardize for m in std for x in m.modalities)
    assert [m.parameters for m in raw] == [m.parameters for m in std]
    assert [m.name for m in members["theta-regression"]] == [m.name for m in raw]
    assert [m.name for m in members["lmi-images"]] == [m.name for m in std]  # its stores are table1-standardised's
    # the paper's own grid, both variants: the same ten ρ̃ = 0.01 … 0.10, one unstandardised, one standardised
    raw_p, std_p = members["table1-paper"], members["table1-standardised-paper"]
    assert len(raw_p) == len(std_p) == 10 and [m.parameters for m in raw_p] == [m.parameters for m in std_p]
    assert not any(x.standardize for m in raw_p for x in m.modalities)
    assert all(x.standardize for m in std_p for x in m.modalities)
    for grid, base in (("table1-paper", "table1"), ("table1-standardised-paper", "table1-standardised")):
        a, b = load_suite(root / f"{grid}.yaml"), load_suite(root / f"{base}.yaml")
        assert a.estimators == b.estimators and a.regression == b.regression and a.seeds == [0, 1, 2], grid
        assert [e.flow for e in a.datasets] == [DEFAULT_FLOW], grid  # not run before the certified default landed


FLOW_SUITE = """\
name: flowed
description: a suite on flowed images
datasets:
  - spec: {spec}
    n: 320
    images: true
    pairs: [[[theta], [X1]]]
    generate: {{shard_size: 160, chunk_size: 32, tile: 8}}
estimators:
  - {{name: Gaussian, method: gaussian}}
seeds: [0]
"""


def test_runs_on_another_flows_images_are_redone(tmp_path):
    """Each run names the flows its images came from; when the suite's specs resolve to another flow (as after the
    default moved to default-v2) its runs are redone, and records from before flows were recorded count as v1's."""
    from .conftest import TINY_SPEC, make_tiny_flow

    for name, seed in (("one", 0), ("two", 5)):
        make_tiny_flow(tmp_path / f"{name}.pt", seed=seed)
        (tmp_path / f"{name}.yaml").write_text(TINY_SPEC.format(checkpoint=f"{name}.pt", standardize="true"))
    (tmp_path / "s.yaml").write_text(FLOW_SUITE.format(spec="one.yaml"))
    out = run_suite(tmp_path / "s.yaml", tmp_path / "out", progress=False, stores_dir=tmp_path / "stores")
    (run,) = (out / "runs").glob("*.json")
    rec = json.loads(run.read_text())
    sha_one = (tmp_path / "one.pt.sha256").read_text().split()[0]
    assert rec["status"] == "ok", rec["error"]
    assert rec["flows"] == {"X1": sha_one, "X2": sha_one}
    t0 = run.stat().st_mtime_ns
    run_suite(tmp_path / "s.yaml", tmp_path / "out", progress=False, stores_dir=tmp_path / "stores")
    assert run.stat().st_mtime_ns == t0  # same flows: kept
    (tmp_path / "s.yaml").write_text(FLOW_SUITE.format(spec="two.yaml"))
    run_suite(tmp_path / "s.yaml", tmp_path / "out", progress=False, stores_dir=tmp_path / "stores")
    sha_two = (tmp_path / "two.pt.sha256").read_text().split()[0]
    assert json.loads(run.read_text())["flows"] == {"X1": sha_two, "X2": sha_two}
    # a record from before flows were recorded was made on v1's images: not these
    legacy = json.loads(run.read_text())
    del legacy["flows"]
    run.write_text(json.dumps(legacy))
    t0 = run.stat().st_mtime_ns
    run_suite(tmp_path / "s.yaml", tmp_path / "out", progress=False, stores_dir=tmp_path / "stores")
    assert run.stat().st_mtime_ns > t0 and json.loads(run.read_text())["flows"]["X1"] == sha_two


def test_a_suite_pins_its_flow_and_the_same_weights_on_another_grid_are_another_map(tmp_path, monkeypatch):
    """`flow:` in a suite's dataset entry sets every modality's flow (what the spec names is overridden), and a run's
    record names the map by ``Flow.map_id``: a registry entry applying the same weights on its own grid has the same
    sha256 but is another map, so the store is regenerated with that grid and the runs are redone."""
    from mi_datagen.store.store import Store

    from .conftest import TINY_SPEC, make_tiny_flow

    sha = make_tiny_flow(tmp_path / "w.pt", steps=8, t_end=0.98)
    fine = {"method": "euler", "steps": 4, "t_end": 0.9, "grid": "designed", "times": [0.0, 0.3, 0.6, 0.8, 0.9]}
    (tmp_path / "registry.json").write_text(json.dumps({
        "w": {"file": "w.pt", "sha256": sha}, "w-fine": {"file": "w.pt", "sha256": sha, "solver": fine}}))
    monkeypatch.setenv("MI_DATAGEN_CHECKPOINTS", str(tmp_path))
    (tmp_path / "t.yaml").write_text(TINY_SPEC.format(checkpoint="w", standardize="true"))
    (tmp_path / "s.yaml").write_text(FLOW_SUITE.format(spec="t.yaml"))
    kw = dict(progress=False, stores_dir=tmp_path / "stores")
    out = run_suite(tmp_path / "s.yaml", tmp_path / "out", **kw)
    (run,) = (out / "runs").glob("*.json")
    assert json.loads(run.read_text())["flows"] == {"X1": sha, "X2": sha}
    (store_path,) = (tmp_path / "stores").glob("*.zarr")
    assert Store(str(store_path)).manifest.modalities[0].solver["steps"] == 8
    (tmp_path / "s.yaml").write_text(FLOW_SUITE.format(spec="t.yaml").replace("images: true",
                                                                               "images: true\n    flow: w-fine"))
    run_suite(tmp_path / "s.yaml", tmp_path / "out", **kw)
    flows = json.loads(run.read_text())["flows"]
    assert flows["X1"] == flows["X2"] and flows["X1"].startswith(sha + "+solver:")
    man = Store(str(store_path)).manifest
    assert {m.flow.checkpoint for m in man.modalities} == {"w-fine"}
    assert man.modalities[0].solver["times"] == fine["times"] and man.modalities[0].flow.sha256 == sha


def test_estimate_plot_is_logarithmic_only_when_the_exact_mi_spans_two_decades():
    from mi_datagen.bench.report import _axis_scale

    assert _axis_scale([0.387, 1.02, 1590.2]) == "symlog"  # the multimodal suite
    assert _axis_scale([0.03, 1.4]) == "linear"  # table1: 47×
    assert _axis_scale([1.0, 100.0]) == "linear" and _axis_scale([1.0, 100.01]) == "symlog"  # the boundary
    assert _axis_scale([0.0, 2.0, 2.0]) == "linear"  # zero truths are not a decade


def test_summary_on_one_mi_level_leaves_r_undefined_without_warnings():
    """A suite run on one dataset so far (one exact MI): bias and RMSE are defined, Pearson r is not (NaN), and
    summarising warns nothing (numpy's divide-by-zero in corrcoef used to leak to the terminal)."""
    import warnings

    runs = [{"estimator": "E", "status": "ok", "truth": 1.39, "estimate": e, "dataset": "d09", "a": ["X1"],
             "b": ["X2"], "time_s": 1.0} for e in (0.9, 1.0, 1.1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarise(runs)["E"]
    assert s["bias"] == pytest.approx(-0.39) and s["rmse"] == pytest.approx(np.sqrt((0.49**2 + 0.39**2 + 0.29**2) / 3))
    assert math.isnan(s["corr"])
