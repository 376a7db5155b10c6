"""Standing fuzz tests (hypothesis, small budget): hostile specs give a valid answer or one line with exit
code 2 — never a traceback, NaN or a hang; any corrupted byte of a store's data is caught by `verify`."""

import math
import shutil
import time

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mi_datagen.cli import app

NUM = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 30, 10 ** 30),
                st.sampled_from([0, 1e-300, 1e300, -1.0, 1e-150, 1e160]))
ANY = st.recursive(st.one_of(NUM, st.text(max_size=12), st.booleans(), st.none()),
                   lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                   max_leaves=12)
NAME = st.sampled_from(["X1", "X2", "theta", "u", "e1", "x", "pmi", "a__b", "index", "Z", "1bad", ""])


@st.composite
def hostile_specs(draw):
    """Mostly well-formed canonical and decay families and graphs with hostile numbers, names and sizes."""
    kind = draw(st.sampled_from(["canonical", "decay", "graph", "junk"]))
    if kind == "junk":
        return draw(ANY)
    shape = draw(st.sampled_from([[4], [2, 3], [3, 8, 8], [3, 32, 32], [0], [3, 10 ** 6, 10 ** 6], []]))
    if kind == "canonical":
        k = draw(st.integers(1, 3))
        return {"family": "canonical", "name": "f", "shape": shape, "eta": [draw(NUM) for _ in range(k)],
                "rho_tilde": [[draw(NUM) for _ in range(k)] for _ in range(2)],
                "rho_hat": draw(st.sampled_from([[[1.0, 0.0], [0.0, 1.0]], [[1.0], [1.0]], [[0.0], [0.0]], [[1e-15], [1.0]]])),
                "checkpoint": draw(st.sampled_from(["default", "nope"])), "standardize": draw(st.booleans())}
    if kind == "decay":
        return {"family": "decay", "name": "d", "shape": shape, "n_modalities": draw(st.integers(-1, 12)),
                "alpha": draw(NUM), "beta": draw(NUM), "rho_hat": draw(NUM),
                "modality_names": draw(st.one_of(st.none(), st.lists(NAME, max_size=4)))}
    a, b = draw(NAME), draw(NAME)
    return {"name": "g", "shape": shape,
            "nodes": [{"name": "u", "kind": "scalar"}, {"name": "theta", "kind": "scalar", "noise_std": draw(NUM)},
                      {"name": a, "kind": "vector", "noise_std": draw(NUM)}, {"name": b, "kind": "vector"}],
            "edges": [{"parent": "u", "child": "theta", "coef": draw(NUM)},
                      {"parent": "u", "child": a, "coef": draw(NUM), "template": draw(st.sampled_from(["ones", None, "random"]))},
                      {"parent": a, "child": b, "coef": draw(NUM)}],
            "target": "theta", "modalities": [{"node": a}, {"node": b}]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=hostile_specs())
def test_hostile_specs_answer_or_refuse_in_one_line(tmp_path, spec):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(spec, allow_unicode=True))
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["info", str(p), "--json"])
    assert time.perf_counter() - t0 < 60
    if r.exit_code == 0:
        assert "nan" not in r.output.lower().replace("nats", ""), r.output[:500]
    else:
        assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (r.exception, r.output[-800:])
        assert r.output.startswith("error:") and "Traceback" not in r.output


@pytest.fixture(scope="module")
def clean_store(tiny_dir, tmp_path_factory):
    from mi_datagen.api import load_and_expand
    from mi_datagen.store.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("fuzz") / "s.zarr"
    generate(load_and_expand(tiny_dir / "tiny.yaml")[0], out,
             GenerateConfig(n=48, shard_size=16, chunk_size=8, tile=8, progress=False), tiny_dir)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corrupted_data_byte_is_caught(clean_store, tmp_path_factory, data):
    from mi_datagen.store.verify import verify

    out = tmp_path_factory.mktemp("c") / "s.zarr"
    shutil.copytree(clean_store, out)
    files = sorted(p for p in out.rglob("*") if p.is_file() and "/c/" in str(p))  # every chunk, digests included
    f = data.draw(st.sampled_from(files))
    raw = bytearray(f.read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    f.write_bytes(bytes(raw))
    rep = verify(str(out))
    assert not rep.ok, (f, i)
    assert math.isfinite(len(rep.problems)) and np.all([isinstance(p, str) for p in rep.problems])
