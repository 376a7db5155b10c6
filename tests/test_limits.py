"""Hostile input: every case is a one-line error (exit 2) that names the problem, and the bounded ones
name the limit and the variable that raises it; nothing allocates or hangs first."""

import pickle
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from mi_datagen.cli import app

SPEC = "family: canonical\nname: s\nshape: [3, 32, 32]\neta: [1.0]\nrho_tilde: [[0.3], [0.3]]\n" \
       "rho_hat: [[1.0, 0.0], [0.0, 1.0]]\n"


def run(tmp_path, text: str | bytes, name="s.yaml"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["validate", str(p)])
    return r, time.perf_counter() - t0


def one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), r.output
    return r.output


BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                 + [f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]" for p, k in zip("abcdef", "bcdefg")]
                 + ["name: [*g, *g, *g, *g, *g, *g, *g, *g, *g]"])


@pytest.mark.parametrize("text, message", [
    (BOMB, "exceeds the limit of 1000000 YAML values after alias expansion (set MI_DATAGEN_MAX_YAML_NODES"),
    ("a: " + "[" * 1000 + "]" * 1000, "nest"),
    ("a: " + "[" * 80 + "]" * 80, "exceeds the limit of 64 levels of YAML nesting (set MI_DATAGEN_MAX_YAML_DEPTH"),
    ("n: " + "9" * 5000, "a value cannot be read: Exceeds the limit (4300 digits)"),
    ("n: " + "x" * 20000, "exceeds the limit of 10000 characters in one YAML value"),
    ("x: &x [*x]\n", "levels of YAML nesting"),
    (b"name: caf\xe9\xff\n", "not a UTF-8 text file"),
    (SPEC.replace("[3, 32, 32]", "[3, 100000, 100000]"),
     "d = 30000000000 exceeds the limit of 16777216 entries per vector node (d = prod(shape)) (set MI_DATAGEN_MAX_D"),
    ("family: decay\nname: d\nn_modalities: 100000\n",
     "100000 modalities: 100000 exceeds the limit of 1000 modalities (set MI_DATAGEN_MAX_MODALITIES"),
    (SPEC + "parameters: {r: 0.3}\n"
     "sweep: {parameter: r, quantity: {a: [X1], b: [X2]}, nats: {start: 0.1, stop: 1.0, num: 20000}}\n",
     "sweep: 20000 exceeds the limit of 10000 sweep members"),
    ("family: decay\nname: d\nn_modalities: 3\nmodality_names: [A, B]\n", "d: modality_names: expected 3 names, got 2"),
    ("family: decay\nname: d\nn_modalities: 3\nlabels: [cat]\n", "labels: expected 3 flow labels"),
    ("family: decay\nname: d\nn_modalities: 3\nmodality_names: [e1, X2, X3]\n", "duplicate node name 'e1'"),
])
def test_hostile_specs_are_one_line_errors(tmp_path, text, message):
    r, seconds = run(tmp_path, text)
    assert message in one_line_error(r).replace("\n", " ")
    assert seconds < 20


def test_limits_can_be_raised(tmp_path, monkeypatch):
    text = SPEC.replace("[3, 32, 32]", "[3, 64, 64]")
    monkeypatch.setenv("MI_DATAGEN_MAX_D", "1000")
    r, _ = run(tmp_path, text)
    assert "d = 12288 exceeds the limit of 1000" in one_line_error(r)


def _file_spec(tmp_path, name):
    return SPEC + \
        f"template: [[{{kind: file, path: {name}}}], [{{kind: file, path: {name}}}]]\n"


def _png16(path):
    from PIL import Image

    Image.fromarray(np.arange(1024, dtype=np.uint16).reshape(32, 32) * 60).save(path)


@pytest.mark.parametrize("name, make, message", [
    ("t.png", lambda p: p.write_text("root:x:0:0:root:/root:/bin/bash\n"), "is not a readable image or .npy file"),
    ("t.npy", lambda p: np.savez(open(p, "wb"), a=np.ones(3072)), "is not a .npy array file"),
    ("t.npy", lambda p: np.save(p, np.array([{"a": 1}] * 3072, dtype=object), allow_pickle=True),
     "holds object values; a template needs real numbers"),
    ("t.npy", lambda p: np.save(p, np.array(["x"] * 3072)), "a template needs real numbers"),
    ("t.npy", lambda p: np.save(p, np.ones(3072) + 1j), "holds complex128 values"),
    ("t.npy", lambda p: p.write_bytes(pickle.dumps(np.ones(3072))), "is not a .npy array file"),
    ("t.npy", lambda p: (np.save(p, np.ones(3072)), p.write_bytes(p.read_bytes()[:2000])), "cannot be read"),
    ("t.npy", lambda p: np.save(p, np.ones(10 ** 3)), "template of shape [1000] does not match the node shape"),
    ("t.png", _png16, "is a I;16 image; templates read 8-bit images exactly"),
])
def test_hostile_template_files_are_one_line_errors(tmp_path, name, make, message):
    make(tmp_path / name)
    r, _ = run(tmp_path, _file_spec(tmp_path, name))
    assert message in one_line_error(r).replace("\n", " ")


def test_a_huge_npy_header_is_refused_before_reading(tmp_path):
    """A header claiming 10¹² elements: refused from the header, nothing allocated."""
    p = tmp_path / "t.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)})
        f.write(b"\0" * 64)
    t0 = time.perf_counter()
    r, _ = run(tmp_path, _file_spec(tmp_path, "t.npy"))
    assert "template of shape [1000000000000] does not match" in one_line_error(r).replace("\n", " ")
    assert time.perf_counter() - t0 < 10


class _Payload:  # what an attacker pickles: any object whose loading would run code
    def __reduce__(self):
        return (print, ("this must never run",))


def _flow_file(tmp_path, **change):
    import torch

    from mi_datagen.flows.checkpoint import save_checkpoint

    from .conftest import make_tiny_flow

    make_tiny_flow(tmp_path / "ok.pt")
    ck = torch.load(tmp_path / "ok.pt", weights_only=True)
    for k, v in change.items():
        if v is None:
            ck.pop(k)
        else:
            ck[k] = v
    save_checkpoint(ck, tmp_path / "f.pt")
    return tmp_path / "f.pt"


@pytest.mark.parametrize("change, message", [
    (dict(model_config=None), r"an exported flow needs \['model_config'\]"),
    (dict(model_config={"image_size": 8, "bogus": 1}), r"model_config: unknown keys \['bogus'\]"),
    (dict(model_config={"base_channels": 100000, "channel_mults": [1, 2, 4, 8]}),
     "exceeds the limit of 500000000 network parameters .*MI_DATAGEN_MAX_MODEL_PARAMS"),
    (dict(solver={"method": "euler", "steps": 10 ** 9, "t_end": 0.98}),
     "steps: 1000000000 exceeds the limit of 10000 ODE steps"),
])
def test_hostile_flow_files_are_refused_before_building(tmp_path, change, message):
    from mi_datagen.errors import CheckpointError
    from mi_datagen.flows.io import load_flow

    with pytest.raises(CheckpointError, match=message):
        load_flow(_flow_file(tmp_path, **change))


def test_a_pickled_payload_or_a_bad_sidecar_is_refused(tmp_path, capsys):
    import torch

    from mi_datagen.errors import CheckpointError
    from mi_datagen.flows.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint({"format": "x", "payload": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="a pickled payload"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "this must never run" not in capsys.readouterr().out
    torch.save({"a": 1}, tmp_path / "c.pt")
    (tmp_path / "c.pt.sha256").write_text("")
    with pytest.raises(CheckpointError, match="not a sha256 sidecar"):
        load_checkpoint(tmp_path / "c.pt")
