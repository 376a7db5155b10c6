"""Hypothesis strategies for random specs (for our tests and for users testing their own code).

Needs ``hypothesis`` (a test dependency): ``pip install mi-datagen[test]``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from mi_datagen.spec.models import EdgeSpec, GraphSpec, ModalitySpec, NodeSpec

_coef = st.one_of(st.floats(-2.0, -0.1), st.floats(0.1, 2.0))
_std = st.one_of(st.just(0.0), st.floats(0.3, 2.0))


@st.composite
def shapes(draw, max_d: int = 12) -> tuple[int, ...]:
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 3))
    w = draw(st.integers(1, max(1, max_d // (c * h))))
    return (c, h, w)


@st.composite
def templates(draw, shape):
    kind = draw(st.sampled_from(["ones", "uniform", "random", "onehot", "blob"]))
    if kind in ("ones", "uniform"):
        return kind
    if kind == "random":
        return {"kind": "random", "seed": draw(st.integers(0, 10_000))}
    if kind == "onehot":
        return {"kind": "onehot", "index": [draw(st.integers(0, s - 1)) for s in shape]}
    return {"kind": "blob", "center": [draw(st.floats(0, shape[1])), draw(st.floats(0, shape[2]))],
            "sigma": draw(st.floats(0.5, 3.0))}


#: hostile numbers for the solver: coefficients over 24 orders of magnitude, noise stds down to 1e-15 (or 0)
hostile_coefs = st.builds(lambda s, e: s * 10.0 ** e, st.sampled_from([-1.0, 1.0]), st.integers(-12, 12))
hostile_stds = st.one_of(st.just(0.0), st.builds(lambda e: 10.0 ** e, st.integers(-15, 6)))


@st.composite
def structured_specs(draw, max_scalar: int = 3, max_vector: int = 4, max_d: int = 12, coefs=None,
                     stds=None) -> GraphSpec:
    """Random DAGs with scalar block coefficients (inside the exact structure). ``coefs`` / ``stds``: strategies for
    edge coefficients and noise stds (default: moderate; ``hostile_coefs`` / ``hostile_stds`` for stress)."""
    _coef_s = coefs if coefs is not None else _coef
    _std_s = stds if stds is not None else _std
    shape = draw(shapes(max_d))
    ns, nv = draw(st.integers(1, max_scalar)), draw(st.integers(1, max_vector))
    kinds = ["scalar"] * ns + ["vector"] * nv
    order = draw(st.permutations(range(ns + nv)))
    names = [f"{'s' if k == 'scalar' else 'v'}{i}" for i, k in enumerate(kinds)]
    nodes = [NodeSpec(name=names[i], kind=kinds[i], noise_std=draw(_std_s)) for i in order]
    edges = []
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            ka, kb = kinds[a], kinds[b]
            if ka == "vector" and kb == "scalar":
                continue  # outside the structure
            if draw(st.booleans()):
                t = draw(templates(shape)) if (ka, kb) == ("scalar", "vector") else None
                edges.append(EdgeSpec(parent=names[a], child=names[b], coef=draw(_coef_s), template=t))
    scal = [n for n, k in zip(names, kinds) if k == "scalar"]
    vec = [n for n, k in zip(names, kinds) if k == "vector"]
    return GraphSpec(name="random", shape=shape, nodes=nodes, edges=edges, target=scal[0],
                     modalities=[ModalitySpec(node=v) for v in vec])
