"""Generation into zarr stores: determinism (batch size, workers, ranks, kill/resume), manifest, MI interval."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from mi_datagen.api import load_and_expand, solver_for
from mi_datagen.data.dataset import MIDataset
from mi_datagen.flows.certify import CertificationError, invert
from mi_datagen.flows.io import load_flow
from mi_datagen.flows.ode import Tiled
from mi_datagen.info.robustness import perturbed_sem
from mi_datagen.info.solver import InfoSolver
from mi_datagen.model.standardize import block_standardizer
from mi_datagen.store.generate import GenerateConfig, generate
from mi_datagen.store.manifest import DatasetManifest
from mi_datagen.store.zarr_store import StoreError, read_manifest

from .conftest import make_tiny_flow

torch.set_num_threads(1)  # tiny nets: threads only add overhead
BIN = Path(sys.executable).parent
SMALL = dict(n=40, shard_size=16, chunk_size=8, tile=8, progress=False)
FLOW_ARRAYS = ["x/X1", "x/X2", "theta", "pmi/theta__X1", "pmi/X1__X2", "pmi/theta__X1+X2"]


def arrays(path, keys=FLOW_ARRAYS) -> dict[str, bytes]:
    g = zarr.open_group(str(path), mode="r")
    return {k: np.asarray(g[k][:]).tobytes() for k in keys}


def tiny(tiny_dir, name="tiny.yaml"):
    return load_and_expand(tiny_dir / name)[0]


@pytest.fixture(scope="module")
def reference(tiny_dir, tmp_path_factory):
    """The tiny two-modality store generated once with batch size 64, one process."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    man = generate(tiny(tiny_dir), out, GenerateConfig(batch_size=64, latents=True, **SMALL), tiny_dir)
    return out, man


def test_same_bytes_for_any_batch_size_and_worker_count(tiny_dir, reference, tmp_path):
    ref = arrays(reference[0])
    for bs, workers in ((1, 1), (7, 1), (7, 2)):
        out = tmp_path / f"b{bs}w{workers}.zarr"
        generate(tiny(tiny_dir), out, GenerateConfig(batch_size=bs, workers=workers, latents=True, **SMALL), tiny_dir)
        assert arrays(out) == ref, (bs, workers)


def test_torchrun_two_ranks_gloo_gives_the_same_store(tiny_dir, reference, tmp_path):
    out = tmp_path / "ranks.zarr"
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--no-python", str(BIN / "mi-datagen"), "generate",
           str(tiny_dir / "tiny.yaml"), "-n", "40", "--out", str(out), "--shard-size", "16", "--chunk-size", "8",
           "--tile", "8", "--batch-size", "7", "--latents", "--no-preview"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert arrays(out) == arrays(reference[0])
    man = read_manifest(out)
    assert man.complete and man.world_size == 2


def _launch(tiny_dir, out, *extra):
    cmd = [str(BIN / "mi-datagen"), "generate", str(tiny_dir / "tiny.yaml"), "-n", "120", "--out", str(out),
           "--shard-size", "8", "--chunk-size", "8", "--tile", "8", "--workers", "1", "--no-preview", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_dir, tmp_path):
    full, cut = tmp_path / "full.zarr", tmp_path / "cut.zarr"
    assert _launch(tiny_dir, full).wait(timeout=300) == 0
    p = _launch(tiny_dir, cut)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a few shards (of 15) are done
        try:
            if np.asarray(zarr.open_group(str(cut), mode="r")["done"][:]).sum() >= 3:
                break
        except Exception:
            pass
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    man = read_manifest(cut)
    assert not man.complete
    with pytest.raises(StoreError, match="incomplete store"):
        MIDataset(str(cut))
    partial = MIDataset(str(cut), allow_incomplete=True)
    done = np.asarray(zarr.open_group(str(cut), mode="r")["done"][:]).astype(bool)
    assert 0 < len(partial) == int(done.sum()) * 8 < 120
    # without --resume an existing store is refused; with different settings --resume is refused
    assert _launch(tiny_dir, cut).wait(timeout=300) == 2
    bad = _launch(tiny_dir, cut, "--resume", "--seed", "1")
    assert bad.wait(timeout=300) == 2 and "different settings (seed)" in " ".join(bad.communicate()[1].split())
    assert _launch(tiny_dir, cut, "--resume").wait(timeout=300) == 0
    assert arrays(cut) == arrays(full)
    assert read_manifest(cut).complete


def _alive_children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table from /proc (Linux)")
def test_workers_leave_when_the_generating_parent_is_killed(tiny_dir, tmp_path):
    """SIGTERM (or SIGKILL) to `generate --workers 2` runs no pool shutdown; its workers must not go on computing
    shards nobody collects. They leave within seconds, and --resume completes the store."""
    out = tmp_path / "w.zarr"
    p = _launch(tiny_dir, out, "--workers", "2")
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and len(workers) < 2:
        workers = [c for c in _alive_children(p.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode()]
        time.sleep(0.2)
    assert len(workers) == 2, "the pool's two workers never started"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "a worker outlived its killed parent"
    assert _launch(tiny_dir, out, "--resume").wait(timeout=300) == 0 and read_manifest(out).complete


def test_resume_after_a_kill_during_creation(tiny_dir, tmp_path):
    """A store killed before its manifest was written is recreated by --resume (no shard can be done)."""
    from mi_datagen.store.zarr_store import MARKER

    out = tmp_path / "s.zarr"
    zarr.open_group(str(out), mode="w", attributes={MARKER: "mi-datagen-store/1"})  # a kill right after creating it
    man = generate(tiny(tiny_dir), out, GenerateConfig(resume=True, **SMALL), tiny_dir)
    assert man.complete
    # a zarr group someone else made (no manifest, no marker) is not ours, even when it holds nothing else
    theirs = tmp_path / "theirs.zarr"
    zarr.open_group(str(theirs), mode="w").create_array("x", shape=(3,), dtype="float64")[:] = [1.0, 2.0, 3.0]
    for flag in ("resume", "overwrite"):
        with pytest.raises(StoreError, match=r"is not a mi-datagen store \(no manifest, no mi-datagen marker\)"):
            generate(tiny(tiny_dir), theirs, GenerateConfig(**{flag: True}, **SMALL), tiny_dir)
    assert np.asarray(zarr.open_group(str(theirs), mode="r")["x"][:]).tolist() == [1.0, 2.0, 3.0]
    other = tmp_path / "notastore"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match=r"holds files that are not part of a mi-datagen store \(precious.txt\)"):
        generate(tiny(tiny_dir), other, GenerateConfig(resume=True, **SMALL), tiny_dir)
    assert (other / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("flag", ["overwrite", "resume"])
def test_overwrite_and_resume_never_delete_what_is_not_ours(tiny_dir, reference, tmp_path, flag):
    """A folder of the user's files, a store holding user files, or a bare zarr group with user files are
    refused with one line and left byte for byte as they were; so is a regular file."""
    import zarr as _zarr

    cases = {}
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "thesis.tex").write_text("years of work")
    cases["plain"] = plain
    mixed = tmp_path / "mixed.zarr"
    shutil.copytree(reference[0], mixed)
    (mixed / "notes.txt").write_text("mine")
    cases["mixed"] = mixed
    bare = tmp_path / "bare.zarr"
    _zarr.open_group(str(bare), mode="w")
    (bare / "data.csv").write_text("1,2,3")
    cases["bare"] = bare
    before = {k: sorted((p.relative_to(v), p.read_bytes()) for p in v.rglob("*") if p.is_file()) for k, v in cases.items()}
    for path in cases.values():
        with pytest.raises(StoreError, match="not part of a mi-datagen store"):
            generate(tiny(tiny_dir), path, GenerateConfig(**{flag: True}, **SMALL), tiny_dir)
    after = {k: sorted((p.relative_to(v), p.read_bytes()) for p in v.rglob("*") if p.is_file()) for k, v in cases.items()}
    assert after == before
    f = tmp_path / "a_file.zarr"
    f.write_text("not a folder")
    with pytest.raises(StoreError, match="exists and is not a folder"):
        generate(tiny(tiny_dir), f, GenerateConfig(**{flag: True}, **SMALL), tiny_dir)
    assert f.read_text() == "not a folder"


def test_resume_refuses_another_pmi_setting(tiny_dir, reference, tmp_path):
    """`pmi` changes what is stored, so it is part of the generation key."""
    cut = tmp_path / "p.zarr"
    shutil.copytree(reference[0], cut)
    with pytest.raises(StoreError, match=r"different settings \(.*pmi"):
        generate(tiny(tiny_dir), cut, GenerateConfig(resume=True, pmi=False, latents=True, **SMALL), tiny_dir)


def test_manifest_round_trips_and_states_the_job(tiny_dir, reference):
    out, man = reference
    again = DatasetManifest.model_validate_json(man.model_dump_json())
    assert again == man and read_manifest(out) == man
    assert json.loads(json.dumps(zarr.open_group(str(out), mode="r").attrs["mi_datagen"])) == \
        json.loads(man.model_dump_json())
    spec = tiny(tiny_dir)
    assert man.info.spec_name == spec.name and man.n == 40 and man.complete and all(man.shards_complete)
    for m in man.modalities:
        assert m.flow.sha256 == load_flow(tiny_dir / "tiny.pt").sha256 and m.certificate.certified
        assert m.roundtrip.rel_rms_max < 1e-5  # float32 storage: the exact inverse recovers the flow input
    assert man.mi("X1", "X2") == pytest.approx(solver_for(spec).mi(["X1"], ["X2"]), rel=1e-12)


def test_round_trip_z_to_x_to_z_from_the_store(tiny_dir, reference):
    """Stored latents → standardised → flow; exactly inverting the stored images gives them back."""
    out, _ = reference
    g = zarr.open_group(str(out), mode="r")
    spec = tiny(tiny_dir)
    model = solver_for(spec).structured
    flow = load_flow(tiny_dir / "tiny.pt")
    for name, label in (("X1", 0), ("X2", 1)):
        z = np.asarray(g[f"z/{name}"][:12]).reshape(12, -1)
        w = block_standardizer(model, name).standardize(z)
        back = invert(Tiled(flow.net, 8), torch.from_numpy(np.asarray(g[f"x/{name}"][:12])), label, flow.solver)
        np.testing.assert_allclose(back.double().numpy().reshape(12, -1), w, atol=2e-5)


def test_stored_pmi_matches_the_solver_on_the_stored_latents(tiny_dir, reference):
    out, _ = reference
    g = zarr.open_group(str(out), mode="r")
    lat = {"X1": np.asarray(g["z/X1"][:]).reshape(40, -1), "X2": np.asarray(g["z/X2"][:]).reshape(40, -1),
           "theta": np.asarray(g["theta"][:])}
    pmi = solver_for(tiny(tiny_dir)).pmi(["X1"], ["X2"], lat)
    np.testing.assert_allclose(np.asarray(g["pmi/X1__X2"][:]), pmi, rtol=1e-12)


def test_uncertified_map_is_refused_unless_forced(tiny_dir, tmp_path):
    make_tiny_flow(tmp_path / "wild.pt", scale=3.0, steps=2, t_end=1.0)
    (tmp_path / "wild.yaml").write_text((tiny_dir / "tiny.yaml").read_text().replace("tiny.pt", "wild.pt"))
    spec = load_and_expand(tmp_path / "wild.yaml")[0]
    with pytest.raises(CertificationError, match="failed certification"):
        generate(spec, tmp_path / "w.zarr", GenerateConfig(**SMALL), tmp_path)
    assert not (tmp_path / "w.zarr").exists()
    man = generate(spec, tmp_path / "w.zarr", GenerateConfig(force=True, **SMALL), tmp_path)
    assert man.forced and not man.modalities[0].certificate.certified and man.modalities[0].certificate.forced


def test_float16_storage_is_measured_and_widens_the_interval(tiny_dir, reference, tmp_path):
    man16 = generate(tiny(tiny_dir), tmp_path / "h.zarr", GenerateConfig(dtype="float16", **SMALL), tiny_dir)
    assert zarr.open_group(str(tmp_path / "h.zarr"), mode="r")["x/X1"].dtype == np.float16
    rt16, rt32 = man16.modalities[0].roundtrip, reference[1].modalities[0].roundtrip
    assert rt16.rel_rms_max > 10 * rt32.rel_rms_max and rt16.rel_rms_max < 1e-2
    iv = {(tuple(r.a), tuple(r.b), tuple(r.given)): r for r in man16.mi_intervals}[(("X1",), ("X2",), ())]
    assert iv.low < iv.high == iv.nats and iv.nats - iv.low < 1e-3


def test_generate_refuses_bad_settings(tiny_dir, tmp_path):
    from mi_datagen.errors import ConfigError

    with pytest.raises(ConfigError, match=r"shard_size \(20\) must be a multiple of tile \(8\)"):
        GenerateConfig(n=10, shard_size=20, chunk_size=4, tile=8)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        GenerateConfig(n=10, dtype="uint8")
    (tmp_path / "big.yaml").write_text((tiny_dir / "tiny.yaml").read_text().replace("[3, 8, 8]", "[3, 16, 16]"))
    for f in ("tiny.pt", "tiny.pt.sha256"):
        shutil.copy(tiny_dir / f, tmp_path / f)
    with pytest.raises(Exception, match=r"maps images of shape \[3, 8, 8\], but the spec's shape is \[3, 16, 16\]"):
        generate(load_and_expand(tmp_path / "big.yaml")[0], tmp_path / "b.zarr", GenerateConfig(**SMALL), tmp_path)


# --- the maths behind standardisation and the MI interval ------------------------------------------
def _example1(tmp_path, d_shape=(2, 3, 3), rho=0.3):
    (tmp_path / "e.yaml").write_text(
        f"family: canonical\nname: e\nshape: {list(d_shape)}\neta: [1.0]\nrho_tilde: [[{rho}], [{rho}]]\n"
        "rho_hat: [[1.0, 0.0], [0.0, 1.0]]\nlabels: [a, b]\n")
    return load_and_expand(tmp_path / "e.yaml")[0]


def test_standardizer_against_the_dense_covariance(tmp_path):
    spec = _example1(tmp_path)
    solver = solver_for(spec)
    model = solver.structured
    A = solver.dense()
    sigma = A["X1"] @ A["X1"].T
    wh = block_standardizer(model, "X1")
    d = model.d
    W = wh.standardize(np.eye(d))  # rows: Σ^(-1/2) e_i (symmetric)
    np.testing.assert_allclose(W @ sigma @ W.T, np.eye(d), atol=1e-12)
    np.testing.assert_allclose(W, W.T, atol=1e-12)
    z = np.random.default_rng(0).standard_normal((5, d))
    np.testing.assert_allclose(wh.unstandardize(wh.standardize(z)), z, atol=1e-12)


@pytest.mark.parametrize("standardized", [False, True])
def test_perturbed_mi_closed_form(tmp_path, standardized):
    """Example 1 with ones templates: only the 1-direction is shared. With a = ρ̂² + dρ̃² (its variance) and
    c = dρ̃² (its cross-covariance), I = −½ log(1 − c²/a²). Isotropic noise δ² adds δ² to a; noise δ²Σ
    multiplies a by (1 + δ²)."""
    rho, delta = 0.3, 0.2
    spec = _example1(tmp_path, rho=rho)
    sem = solver_for(spec).sem
    d = sem.d
    a, c = 1.0 + d * rho ** 2, d * rho ** 2
    noisy, rename = perturbed_sem(sem, {"X1": delta, "X2": delta}, {"X1": standardized, "X2": standardized})
    got = InfoSolver(noisy).mi([rename["X1"]], [rename["X2"]])
    a2 = a * (1 + delta ** 2) if standardized else a + delta ** 2
    assert got == pytest.approx(-0.5 * np.log(1 - c ** 2 / a2 ** 2), rel=1e-10)
    assert InfoSolver(noisy).mi(["X1"], ["X2"]) == pytest.approx(-0.5 * np.log(1 - c ** 2 / a ** 2), rel=1e-10)
    assert InfoSolver(noisy, method="dense").mi([rename["X1"]], [rename["X2"]]) == pytest.approx(got, rel=1e-9)



def test_cli_generate_then_inspect(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from mi_datagen.cli import app

    runner = CliRunner()
    out = tmp_path / "c.zarr"
    r = runner.invoke(app, ["generate", str(tiny_dir / "tiny.yaml"), "-n", "16", "--out", str(out), "--shard-size", "8",
                            "--tile", "8", "--chunk-size", "8", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "16 samples × 2 modalities (float32), complete, maps certified" in r.output
    assert (tmp_path / "c.zarr.preview.png").stat().st_size > 1000
    r = runner.invoke(app, ["inspect", str(out), "--preview", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert "shards 2/2 complete" in r.output and "I(X1; X2)" in r.output and (tmp_path / "p.png").exists()
    r = runner.invoke(app, ["generate", str(tiny_dir / "tiny.yaml"), "-n", "16", "--out", str(out)])
    assert r.exit_code == 2 and "exists; pass --resume" in " ".join(r.output.split())
    r = runner.invoke(app, ["inspect", str(tmp_path / "missing.zarr")])
    assert r.exit_code == 2 and "no such dataset store" in " ".join(r.output.split())


def test_independent_per_class_checkpoints(tmp_path):
    """Each modality may name its own single-class checkpoint: (checkpoint, class) per modality."""
    make_tiny_flow(tmp_path / "reds.pt", seed=1, classes=("reds",))
    make_tiny_flow(tmp_path / "blues.pt", seed=2, classes=("blues",))
    (tmp_path / "s.yaml").write_text(
        "name: per_class\nshape: [3, 8, 8]\nnodes:\n  - {name: theta, kind: scalar}\n  - {name: X1, kind: vector}\n"
        "  - {name: X2, kind: vector}\nedges:\n  - {parent: theta, child: X1, coef: 0.2, template: ones}\n"
        "  - {parent: theta, child: X2, coef: 0.2, template: ones}\ntarget: theta\nmodalities:\n"
        "  - {node: X1, flow: {checkpoint: reds.pt, label: reds}}\n"
        "  - {node: X2, flow: {checkpoint: blues.pt, label: 0}}\n")
    man = generate(load_and_expand(tmp_path / "s.yaml")[0], tmp_path / "o.zarr", GenerateConfig(**SMALL), tmp_path)
    f1, f2 = (m.flow for m in man.modalities)
    assert (f1.file, f1.class_name, f2.file, f2.class_name) == ("reds.pt", "reds", "blues.pt", "blues")
    assert f1.sha256 != f2.sha256 and all(m.certificate.certified for m in man.modalities)
