"""Templates resolve to the arrays they describe."""

import math

import numpy as np
import pytest
from PIL import Image

from mi_datagen.spec.io import parse_spec
from mi_datagen.spec.templates import resolve_template

SHAPE = (3, 4, 5)


def t(**kw):
    spec = parse_spec({"name": "x", "nodes": [{"name": "a", "kind": "scalar"}, {"name": "v", "kind": "vector"}],
                       "edges": [{"parent": "a", "child": "v", "template": kw}], "target": "a",
                       "modalities": [{"node": "v"}]})
    return resolve_template(spec.edges[0].template, SHAPE)


def test_ones_uniform():
    assert np.array_equal(resolve_template("ones", SHAPE), np.ones(60))
    u = resolve_template("uniform", SHAPE)
    assert np.linalg.norm(u) == pytest.approx(1.0) and np.ptp(u) == 0


def test_onehot_index_forms_agree():
    a, b = t(kind="onehot", index=[1, 2, 3]), t(kind="onehot", index=1 * 20 + 2 * 5 + 3)
    assert np.array_equal(a, b) and a.sum() == 1.0 and a.reshape(SHAPE)[1, 2, 3] == 1.0


def test_blob_peak_and_channels():
    b = t(kind="blob", center=[2, 1], sigma=1.0, channels=[0, 2]).reshape(SHAPE)
    assert b[0, 2, 1] == pytest.approx(1.0) and b[1].max() == 0.0
    assert b[2, 2, 2] == pytest.approx(math.exp(-0.5))


def test_random_is_seeded():
    assert np.array_equal(t(kind="random", seed=4), t(kind="random", seed=4))
    assert not np.array_equal(t(kind="random", seed=4), t(kind="random", seed=5))
    u = t(kind="random", seed=1, distribution="uniform")
    assert u.min() >= 0 and u.max() < 1


@pytest.mark.parametrize("how,check", [("l2", lambda a: np.linalg.norm(a)), ("rms", lambda a: np.linalg.norm(a) / math.sqrt(60)),
                                       ("max", lambda a: np.abs(a).max())])
def test_normalize(how, check):
    assert check(t(kind="random", seed=2, normalize=how)) == pytest.approx(1.0)


def test_file_npy_and_image(tmp_path):
    arr = np.random.default_rng(0).random(SHAPE)
    np.save(tmp_path / "a.npy", arr)
    np.save(tmp_path / "flat.npy", arr.reshape(-1))
    for name in ("a.npy", "flat.npy"):
        spec = parse_spec({"name": "x", "shape": list(SHAPE), "nodes": [{"name": "a", "kind": "scalar"},
                           {"name": "v", "kind": "vector"}], "edges": [{"parent": "a", "child": "v",
                           "template": {"kind": "file", "path": name}}], "target": "a", "modalities": [{"node": "v"}]})
        got = resolve_template(spec.edges[0].template, SHAPE, base_dir=tmp_path)
        np.testing.assert_array_equal(got, arr.reshape(-1))
    img = (np.random.default_rng(1).random((4, 5, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "i.png")
    spec = parse_spec({"name": "x", "nodes": [{"name": "a", "kind": "scalar"}, {"name": "v", "kind": "vector"}],
                       "edges": [{"parent": "a", "child": "v", "template": {"kind": "file", "path": "i.png"}}],
                       "target": "a", "modalities": [{"node": "v"}]})
    got = resolve_template(spec.edges[0].template, SHAPE, base_dir=tmp_path)
    np.testing.assert_allclose(got, np.moveaxis(img, -1, 0).reshape(-1) / 255.0)


def test_wave_template_values_and_errors():
    import math

    from mi_datagen.errors import SpecError
    from mi_datagen.spec.templates import resolve_template
    from mi_datagen.spec.templates_spec import WaveTemplate

    t = resolve_template(WaveTemplate(kind="wave", freq=(1, 2), channels=[1.0, 0.0]), (2, 4, 4)).reshape(2, 4, 4)
    assert t[0, 1, 1] == pytest.approx(math.cos(2 * math.pi * (1 / 4 + 2 / 4)), abs=1e-12) and not t[1].any()
    with pytest.raises(SpecError, match="above the grid's Nyquist frequency"):
        resolve_template(WaveTemplate(kind="wave", freq=(3, 0)), (1, 4, 4), where="templates.w")
    with pytest.raises(SpecError, match="2 weights for 3 channel"):
        resolve_template(WaveTemplate(kind="wave", freq=(1, 1), channels=[1.0, 2.0]), (3, 4, 4))


def test_wave_envelope_is_a_gabor_patch():
    import math

    from mi_datagen.spec.templates import resolve_template
    from mi_datagen.spec.templates_spec import WaveTemplate

    plain = resolve_template(WaveTemplate(kind="wave", freq=(2, 0)), (1, 8, 8)).reshape(8, 8)
    gabor = resolve_template(WaveTemplate(kind="wave", freq=(2, 0), envelope=(3.0, 4.0, 1.5)), (1, 8, 8)).reshape(8, 8)
    h, w = 6, 1
    assert gabor[h, w] == pytest.approx(plain[h, w] * math.exp(-((h - 3) ** 2 + (w - 4) ** 2) / (2 * 1.5 ** 2)))
    assert abs(gabor[3, 4]) == pytest.approx(abs(plain[3, 4]))  # the window is 1 at its centre
