"""The command line: schema, validate, expand, info (table and manifest JSON), errors."""

import json

import yaml
from typer.testing import CliRunner

from mi_datagen.api import load_and_expand, solver_for
from mi_datagen.cli import app
from mi_datagen.spec.io import loads_spec
from mi_datagen.store.manifest import InformationManifest
from tests.conftest import SPECS

runner = CliRunner()


def test_schema_is_json_schema():
    r = runner.invoke(app, ["schema"])
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert schema["title"] == "mi-datagen spec"
    assert "GraphSpec" in json.dumps(schema) and "DecayFamily" in json.dumps(schema)


def test_validate_ok_and_error(tmp_path):
    r = runner.invoke(app, ["validate", str(SPECS / "multimodal_decay.yaml")])
    assert r.exit_code == 0 and "OK multimodal_decay" in r.stdout and "structured" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: [{name: a, kind: scalar}]\ntarget: a\nmodalities: [{node: a}]\n")
    r = runner.invoke(app, ["validate", str(bad)])
    assert r.exit_code == 2
    assert "modalities[0].node: 'a' is a scalar node" in r.output


def test_expand_round_trips(tmp_path):
    r = runner.invoke(app, ["expand", str(SPECS / "multimodal_decay.yaml")])
    assert r.exit_code == 0
    explicit = loads_spec(r.stdout)
    assert "family" not in yaml.safe_load(r.stdout) and len(explicit.modalities) == 10
    original = load_and_expand(SPECS / "multimodal_decay.yaml")[0]
    assert solver_for(explicit).mi("X1", "X3") == solver_for(original).mi("X1", "X3")


def test_expand_sweep_multi_document():
    r = runner.invoke(app, ["expand", str(SPECS / "two_modalities_sweep.yaml")])
    docs = list(yaml.safe_load_all(r.stdout))
    assert len(docs) == 10 and all("sweep" not in d or d["sweep"] is None for d in docs)


def test_info_json_manifest():
    r = runner.invoke(app, ["info", str(SPECS / "two_modalities.yaml"), "--json"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    m = InformationManifest.model_validate(doc)
    pair = [x for x in doc["mutual_information"] if x["a"] == ["X1"] and x["b"] == ["X2"] and x["given"] == []]
    assert len(pair) == 1 and set(pair[0]) >= {"a", "b", "given", "nats"}
    assert pair[0]["nats"] == solver_for(load_and_expand(SPECS / "two_modalities.yaml")[0]).mi("X1", "X2")
    assert m.units == "nats" and len(m.spec_sha256) == 64
    assert any(e["nodes"] == ["X1"] for e in doc["entropies"]) and doc["total_correlation"]


def test_info_json_infinite_is_explicit(tmp_path):
    spec = tmp_path / "inf.yaml"
    spec.write_text("name: inf\nshape: [4]\nnodes: [{name: u, kind: scalar}, {name: X, kind: vector, noise_std: 0}]\n"
                    "edges: [{parent: u, child: X, template: ones}]\ntarget: u\nmodalities: [{node: X}]\n")
    r = runner.invoke(app, ["info", str(spec), "--json"])
    assert r.exit_code == 0
    assert '"nats": Infinity' in r.stdout
    rec = json.loads(r.stdout)["mutual_information"][0]
    assert rec["nats"] == float("inf") and "deterministic" in rec["note"]


def test_info_table_text():
    r = runner.invoke(app, ["info", str(SPECS / "chain.yaml")])
    assert r.exit_code == 0 and "I(theta; X1)" in r.stdout and "bits" in r.stdout


def test_missing_file():
    r = runner.invoke(app, ["info", "nope.yaml"])
    assert r.exit_code == 2 and "spec file not found" in r.output


def test_expanded_sweep_validates_and_keeps_its_numbers(tmp_path):
    """`expand`'s multi-document output is a valid spec file: same members, same exact MI."""
    out = tmp_path / "sweep.yaml"
    r = runner.invoke(app, ["expand", str(SPECS / "two_modalities_sweep.yaml"), "-o", str(out)])
    assert r.exit_code == 0
    r = runner.invoke(app, ["validate", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("OK two_modalities_sweep_") == 10
    again, original = load_and_expand(out), load_and_expand(SPECS / "two_modalities_sweep.yaml")
    assert [g.name for g in again] == [g.name for g in original]
    for a, b in zip(again, original):
        assert solver_for(a).mi("X1", "X2") == solver_for(b).mi("X1", "X2")


def test_export_flow_never_overwrites_an_existing_file(tmp_path):
    pinned = tmp_path / "default.pt"
    pinned.write_bytes(b"pinned bytes")
    r = runner.invoke(app, ["export-flow", str(tmp_path / "missing.pt"), "--out", str(pinned)])
    assert r.exit_code == 2
    assert "--out" in r.output and "--overwrite" in r.output and "Traceback" not in r.output
    assert pinned.read_bytes() == b"pinned bytes"
