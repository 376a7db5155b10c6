"""Malformed specs: each is rejected with a message that names the field (messages pinned)."""

import copy

import numpy as np
import pytest
import yaml

from mi_datagen.api import expand
from mi_datagen.errors import SpecError
from mi_datagen.model.compile import compile_spec
from mi_datagen.spec.io import loads_spec

BASE = yaml.safe_load("""
name: base
shape: [3, 4, 4]
parameters: {rho: 0.5}
nodes:
  - {name: u, kind: scalar}
  - {name: theta, kind: scalar, noise_std: 0.0}
  - {name: X1, kind: vector}
  - {name: X2, kind: vector}
edges:
  - {parent: u, child: theta, coef: 1.0}
  - {parent: u, child: X1, coef: rho, template: ones}
  - {parent: u, child: X2, coef: 0.3, template: ones}
target: theta
modalities: [{node: X1}, {node: X2}]
""")


def edit(fn):
    spec = copy.deepcopy(BASE)
    fn(spec)
    return yaml.safe_dump(spec)


def run(text: str, tmp_path=None):
    """Load, expand and compile (some errors, e.g. template shapes, surface at compile)."""
    for g in expand(loads_spec(text, "spec.yaml"), tmp_path or "."):
        compile_spec(g, tmp_path or ".")


def set_(path, value):
    def fn(spec):
        obj = spec
        for p in path[:-1]:
            obj = obj[p]
        obj[path[-1]] = value
    return fn


def pop(path):
    def fn(spec):
        obj = spec
        for p in path[:-1]:
            obj = obj[p]
        del obj[path[-1]]
    return fn


def add_edge(**e):
    return lambda s: s["edges"].append(e)


def add_node(**n):
    return lambda s: s["nodes"].append(n)


CASES = {
    "cycle": (lambda s: s["edges"].extend([{"parent": "X1", "child": "X2"}, {"parent": "X2", "child": "X1"}]),
              "edges: the graph has a cycle X1 -> X2 -> X1"),
    "unknown child": (add_edge(parent="u", child="nope"), "edges[3].child: unknown node 'nope'"),
    "unknown parent": (add_edge(parent="ghost", child="X1"), "edges[3].parent: unknown node 'ghost'"),
    "negative noise": (set_(["nodes", 2, "noise_std"], -1.0), "nodes[2].noise_std: noise_std must be >= 0, got -1.0"),
    "nan coef": (set_(["edges", 0, "coef"], float("nan")), "edges[0].coef: Input should be a finite number"),
    "inf coef": (set_(["edges", 0, "coef"], float("inf")), "edges[0].coef: Input should be a finite number"),
    "list coef": (set_(["edges", 0, "coef"], [1]), "edges[0].coef: Input should be a valid number"),
    "missing target": (pop(["target"]), "target: Field required"),
    "missing nodes": (pop(["nodes"]), "nodes: Field required"),
    "missing name": (pop(["name"]), "name: Field required"),
    "duplicate node": (add_node(name="X1", kind="vector"), "nodes[4].name: duplicate node name 'X1'"),
    "target vector": (set_(["target"], "X1"), "target: node 'X1' is a vector node; θ must be a scalar node"),
    "target unknown": (set_(["target"], "phi"), "target: unknown node 'phi'"),
    "modality scalar": (set_(["modalities", 0, "node"], "u"), "modalities[0].node: 'u' is a scalar node"),
    "modality unknown": (set_(["modalities", 0, "node"], "X9"), "modalities[0].node: unknown node 'X9'"),
    "modality twice": (set_(["modalities", 1, "node"], "X1"), "modalities[1].node: 'X1' is listed twice"),
    "no modalities": (set_(["modalities"], []), "modalities: List should have at least 1 item"),
    "no nodes": (set_(["nodes"], []), "nodes: List should have at least 1 item"),
    "extra field": (set_(["colour"], "red"), "colour: Extra inputs are not permitted"),
    "extra node field": (set_(["nodes", 0, "mean"], 1.0), "nodes[0].mean: Extra inputs are not permitted"),
    "bad kind": (set_(["nodes", 0, "kind"], "matrix"), "nodes[0].kind: Input should be 'scalar' or 'vector'"),
    "bad name": (set_(["nodes", 0, "name"], "2u"), "nodes[0].name: String should match pattern"),
    "scalar-scalar template": (set_(["edges", 0, "template"], "ones"),
                               "edges[0].template: u -> theta joins two scalar nodes, which takes no template"),
    "vector-scalar no template": (add_edge(parent="X1", child="theta"),
                                  "edges[3].template: X1 -> theta maps a vector to a scalar and needs the weights"),
    # without this rule the structured solver dropped the edge: I(θ; X1) came out 0 instead of its true value
    "scalar-vector no template": (lambda s: s["edges"][1].pop("template"),
                                  "edges[1].template: u -> X1 spreads a scalar over a vector and needs the template"),
    "unknown template": (set_(["edges", 1, "template"], "sparkle"), "edges[1].template: unknown template 'sparkle'"),
    "builtin template name": (set_(["templates"], {"ones": {"kind": "ones"}}),
                              "templates: template names ['ones'] are built in"),
    "undeclared parameter": (set_(["edges", 2, "coef"], "gamma"),
                             "edges[2].coef: 'gamma' is neither a number nor a declared parameter"),
    "duplicate edge": (add_edge(parent="u", child="X1", coef=2.0), "edges[3]: duplicate edge u -> X1"),
    "self loop": (add_edge(parent="X1", child="X1"), "edges: the graph has a cycle X1 -> X1"),
    "solve undeclared": (set_(["solve"], {"parameter": "eta", "quantity": {"a": ["X1"], "b": ["X2"]}, "nats": 0.5}),
                         "solve.parameter: 'eta' is not in parameters"),
    "solve nonpositive": (set_(["solve"], {"parameter": "rho", "quantity": {"a": ["X1"], "b": ["X2"]}, "nats": -1}),
                          "solve.nats: Input should be greater than 0"),
    "solve and sweep": (lambda s: s.update(solve={"parameter": "rho", "quantity": {"a": ["X1"], "b": ["X2"]}, "nats": 0.5},
                                           sweep={"parameter": "rho", "values": [0.1]}),
                        "solve and sweep cannot both be set"),
    "sweep empty": (set_(["sweep"], {"parameter": "rho"}), "sweep: sweep needs exactly one of: `values`"),
    "report unknown": (set_(["report"], [{"a": ["X1"], "b": ["Z"]}]), "report[0].b: unknown node 'Z'"),
    "report overlap": (set_(["report"], [{"a": ["X1"], "b": ["X1"]}]), "report[0]: a, b and given must be disjoint"),
    "blob sigma": (set_(["edges", 1, "template"], {"kind": "blob", "center": [1, 1], "sigma": -2}),
                   "edges[1].template.sigma: Input should be greater than 0"),
    "template kind": (set_(["edges", 1, "template"], {"kind": "star"}),
                      "edges[1].template: Input tag 'star' found using 'kind' does not match"),
    "onehot out of shape": (set_(["edges", 1, "template"], {"kind": "onehot", "index": [0, 9, 0]}),
                            "edges[1].template.index: [0, 9, 0] does not fit the node shape [3, 4, 4]"),
    "onehot flat too big": (set_(["edges", 1, "template"], {"kind": "onehot", "index": 48}),
                            "edges[1].template.index: flat index 48 >= d = 48"),
    "blob channel": (set_(["edges", 1, "template"], {"kind": "blob", "center": [1, 1], "sigma": 1, "channels": [3]}),
                     "edges[1].template.channels: [3] out of range for 3 channel(s)"),
    "file missing": (set_(["edges", 1, "template"], {"kind": "file", "path": "nowhere.npy"}),
                     "edges[1].template.path: template file"),
    "shape rank": (set_(["shape"], [1, 2, 3, 4]), "shape: shape must have 1 to 3 dimensions"),
    "version": (set_(["version"], 2), "version: Input should be 1"),
    "zero norm": (set_(["edges", 1, "template"], {"kind": "blob", "center": [1, 1], "sigma": 1, "amplitude": 0,
                                                  "normalize": "l2"}),
                  "edges[1].template.normalize: cannot normalize an all-zero template"),
    "negative noise parameter": (lambda s: (s["parameters"].update(sd=-0.5), s["nodes"][2].update(noise_std="sd")),
                                 "nodes[2].noise_std: parameter 'sd' = -0.5 is negative"),
}

RAW = {
    "python tag": ("name: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML (only plain YAML, no python tags)"),
    "duplicate key": ("name: a\nname: b\n", "duplicate key 'name' at line 2 (first at line 1)"),
    "top-level list": ("- 1\n- 2\n", "a spec must be a mapping at the top level, got list"),
    "unknown family": ("family: spiral\nname: x\n", "family: must be one of 'canonical', 'decay'"),
    "canonical rows": ("family: canonical\nname: c\neta: [1.0]\nrho_tilde: [[0.1, 0.2]]\nrho_hat: [[1.0]]\n",
                       "rho_tilde[0]: expected 1 entries (one per common cause, len(eta)), got 2"),
    "decay templates": ("family: decay\nname: d\nn_modalities: 3\ntemplate: [ones, ones]\n",
                        "template: a list must give one template per modality (3), got 2"),
    "bad yaml": ("name: [unclosed\n", "not valid YAML"),
}


def test_base_spec_is_valid():
    run(yaml.safe_dump(BASE))


def test_at_least_thirty_cases():
    assert len(CASES) + len(RAW) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_rejected(case):
    fn, message = CASES[case]
    with pytest.raises(SpecError) as info:
        run(edit(fn))
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("case", sorted(RAW))
def test_malformed_text_rejected(case):
    text, message = RAW[case]
    with pytest.raises(SpecError) as info:
        run(text)
    assert message in str(info.value), str(info.value)


def test_file_template_shape_mismatch(tmp_path):
    np.save(tmp_path / "t.npy", np.ones(5))
    spec = copy.deepcopy(BASE)
    spec["edges"][1]["template"] = {"kind": "file", "path": "t.npy"}
    with pytest.raises(SpecError, match=r"edges\[1\]\.template\.path: template of shape \[5\] does not match"):
        run(yaml.safe_dump(spec), tmp_path)


def test_file_template_nan(tmp_path):
    arr = np.ones((3, 4, 4))
    arr[0, 0, 0] = np.nan
    np.save(tmp_path / "t.npy", arr)
    spec = copy.deepcopy(BASE)
    spec["edges"][1]["template"] = {"kind": "file", "path": "t.npy"}
    with pytest.raises(SpecError, match="NaN or infinite"):
        run(yaml.safe_dump(spec), tmp_path)
