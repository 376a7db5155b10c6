"""The uint8 quantisation study: export, clamping, the latent perturbation through the exact inverse,
and the MI the perturbation model leaves."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mi_datagen.api import load_and_expand
from mi_datagen.bench.quantise import (
    SCALE,
    clamped_fraction,
    discrete_entropy_fine,
    from_uint8,
    quantisation_effect,
    to_uint8,
)
from mi_datagen.store.generate import GenerateConfig, generate

torch.set_num_threads(1)


def test_export_round_trip_and_clamping():
    x = np.linspace(-1.0, 1.0, 1001).astype(np.float32)
    assert np.abs(from_uint8(to_uint8(x)) - x).max() <= 0.5 / SCALE + 1e-6  # half a step inside the range
    assert to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]
    a = np.array([[0.0, 1.5], [-1.2, 0.3]], dtype=np.float32)
    assert clamped_fraction(a, rows=1) == pytest.approx(0.5)
    assert discrete_entropy_fine(1.0, 10) == pytest.approx(1.0 + 10 * math.log(127.5))


@pytest.fixture(scope="module")
def flow_store(tiny_dir, tmp_path_factory):
    spec = load_and_expand(tiny_dir / "raw.yaml")[0]
    out = tmp_path_factory.mktemp("q") / "q.zarr"
    man = generate(spec, out, GenerateConfig(n=64, shard_size=32, chunk_size=32, tile=8, progress=False), tiny_dir)
    return out, man


def test_uint8_perturbation_is_measured_through_the_exact_inverse(flow_store, tiny_dir):
    import zarr

    out, man = flow_store
    q = quantisation_effect(str(out), n_check=8)
    g = zarr.open_group(str(out), mode="r")
    for m in ("X1", "X2"):
        r = q["modalities"][m]
        x = np.asarray(g[f"x/{m}"][:])
        assert r["clamped_fraction"] == pytest.approx(np.mean(np.abs(x) > 1 + 0.5 / SCALE), abs=1e-12)
        # rounding moves each value by at most half a step (clamped ones by more): the RMS is at least
        # that of the in-range rounding error, and the inverse sees a far larger perturbation than float32 had
        assert r["quantisation_rms"] > 0.2 / SCALE
        assert r["uint8_roundtrip"]["abs_rms_max"] > 100 * r["float_roundtrip"]["abs_rms_max"]
        assert r["float_roundtrip"]["rel_rms_max"] < 1e-4  # the stored float32 values invert exactly
    (row,) = [r for r in q["mi"] if r["a"] == ["X1"] and r["b"] == ["X2"]]
    assert row["nats"] == pytest.approx(man.mi("X1", "X2"), rel=1e-12)
    # the 8-bit model loses information, and the loss grows with the perturbation
    assert 0 < row["uint8_model_nats"] < row["nats"]
    float_row = next(r for r in man.mi_intervals if r.a == ["X1"] and r.b == ["X2"] and not r.given)
    assert row["uint8_model_nats"] < float_row.nats_perturbed


def test_entropy_check_uint8_reports_the_model_mi(flow_store, tiny_dir):
    from mi_datagen.bench.entropy_check import entropy_check

    out, _ = flow_store
    res = entropy_check(str(out), "X1", "X2", sizes=[64], uint8=True, n_check=4)
    assert res["rows"][0]["estimator"] == "lzma" and res["quantisation"]["n_check"] == 4
    assert res["uint8_model_mi"] == next(r["uint8_model_nats"] for r in res["quantisation"]["mi"]
                                         if r["a"] == ["X1"] and r["b"] == ["X2"])


def test_truth_entropies_computed_after_the_fact_match_generation(flow_store, tiny_dir, tmp_path):
    """A store made without --entropy-samples gets the same h(X) records as one made with them; computing
    them never writes into the store, and `add-entropies` records them as generation would have."""
    from typer.testing import CliRunner

    from mi_datagen.bench.entropy_check import true_entropies, true_entropy_stderrs
    from mi_datagen.cli import app
    from mi_datagen.store.store import Store

    out, _ = flow_store
    spec = load_and_expand(tiny_dir / "raw.yaml")[0]
    kw = dict(entropy_samples=2, entropy_terms=3, entropy_probes=2)
    man = generate(spec, tmp_path / "e.zarr", GenerateConfig(n=64, shard_size=32, chunk_size=32, tile=8,
                                                             progress=False, **kw), tiny_dir)
    rec = {tuple(r.nodes): r.nats for r in man.image_entropies}
    before = (Path(out) / "manifest.json").read_bytes()
    assert true_entropies(Store(out), "X1", "X2") is None  # none recorded, none asked for
    later = true_entropies(Store(out), "X1", "X2", samples=2, terms=3, probes=2)
    assert later == pytest.approx({"a": rec[("X1",)], "b": rec[("X2",)], "ab": rec[("X1", "X2")]}, rel=1e-12)
    assert (Path(out) / "manifest.json").read_bytes() == before  # a check reads, never writes
    r = CliRunner().invoke(app, ["add-entropies", str(out), "--samples", "2", "--terms", "3", "--probes", "2"])
    assert r.exit_code == 0, r.output
    after = Store(out).manifest
    assert [r.model_dump() for r in after.image_entropies] == [r.model_dump() for r in man.image_entropies]
    assert true_entropies(Store(out), "X1", "X2") == later and after.complete
    # the check reports each estimate's standard error (over 2 samples, so positive)
    se = {tuple(r.nodes): r.stderr for r in man.image_entropies}
    assert true_entropy_stderrs(after.image_entropies, "X2", "X1") == pytest.approx(
        {"a": se[("X2",)], "b": se[("X1",)], "ab": se[("X1", "X2")]}, rel=1e-12)
    assert min(se.values()) > 0
