"""Per-sample certification in `generate` (flow issue, item 4): every selected stored sample's own trajectory is
certified at the last steps, the manifest records how many and the failure-rate bound, failures are listed, the
images are the same bytes as without it, and the selection does not depend on batches or workers."""

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from mi_datagen.api import load_and_expand
from mi_datagen.store.generate import GenerateConfig, generate
from mi_datagen.store.job import failure_bound, selected
from mi_datagen.store.store import Store

from .conftest import TINY_SPEC, make_tiny_flow
from .test_store import FLOW_ARRAYS, arrays

torch.set_num_threads(1)
SMALL = dict(n=48, shard_size=16, chunk_size=8, tile=8, progress=False)


def tiny(d, name="tiny.yaml"):
    return load_and_expand(d / name)[0]


def test_selection_is_a_stable_share_of_indices():
    idx = np.arange(200_000)
    s = selected(7, idx, 0.1)
    assert abs(s.mean() - 0.1) < 0.003  # binomial sd 0.0007
    assert np.array_equal(s[1000:1100], selected(7, idx[1000:1100], 0.1))  # a sample's fate is its own
    assert not np.array_equal(s, selected(8, idx, 0.1))
    assert selected(0, idx[:50], 1.0).all() and not selected(0, idx[:50], 0.0).any()


def test_failure_bound_is_the_clopper_pearson_upper_limit():
    assert failure_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-9)  # ≈ 3/n
    assert failure_bound(0, 1000) < 3.0 / 1000
    assert failure_bound(5, 5) == 1.0 and failure_bound(0, 0) is None
    assert failure_bound(2, 100) > failure_bound(1, 100) > failure_bound(0, 100)


def test_every_sample_certified_same_images_and_any_batching(tiny_dir, tmp_path):
    few = dict(SMALL, n=16)  # every sample with its Lipschitz estimate: the costly setting, on fewer samples
    plain = tmp_path / "plain.zarr"
    generate(tiny(tiny_dir), plain, GenerateConfig(**few), tiny_dir)
    full = tmp_path / "full.zarr"
    man = generate(tiny(tiny_dir), full, GenerateConfig(certify_fraction=1.0, certify_steps=2, lipschitz=True,
                                                        **few), tiny_dir)
    assert arrays(full) == arrays(plain)  # certification never changes what is stored
    for m in man.modalities:
        sc = m.sample_certification
        assert sc.n_checked == 16 and sc.n_failed == 0 and sc.failed_indices == []
        assert sc.steps == [6, 7] and sc.lipschitz and 0 < sc.worst < 1
        assert sc.failure_rate_bound_95 == pytest.approx(failure_bound(0, 16))
    vals = np.asarray(zarr.open_group(str(full), mode="r")["cert/X1"][:])
    assert np.isfinite(vals).all() and vals.max() == pytest.approx(man.modalities[0].sample_certification.worst)
    half = tmp_path / "half.zarr"
    generate(tiny(tiny_dir), half, GenerateConfig(certify_fraction=0.5, batch_size=8, workers=2, **SMALL), tiny_dir)
    again = tmp_path / "again.zarr"
    generate(tiny(tiny_dir), again, GenerateConfig(certify_fraction=0.5, batch_size=64, **SMALL), tiny_dir)
    keys = FLOW_ARRAYS + ["cert/X1", "cert/X2"]
    assert arrays(half, keys) == arrays(again, keys)
    v = np.asarray(zarr.open_group(str(half), mode="r")["cert/X2"][:])
    assert np.array_equal(~np.isnan(v), selected(0, np.arange(48), 0.5))
    assert Store(half).manifest.modalities[1].sample_certification.n_checked == int(selected(0, np.arange(48), 0.5).sum())


def test_failures_are_listed_not_stored_as_certified(tmp_path):
    """A flow too strong to be a contraction, forced through: the failing samples are named in the manifest, the CLI
    says so, and --resume with another certification setting is refused (it is part of the job)."""
    make_tiny_flow(tmp_path / "wild.pt", scale=3.0, steps=2, t_end=0.99)
    (tmp_path / "wild.yaml").write_text(TINY_SPEC.format(checkpoint="wild.pt", standardize="true"))
    from mi_datagen.cli import app

    out = tmp_path / "wild.zarr"
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "wild.yaml"), "-n", "32", "--out", str(out),
                                 "--shard-size", "16", "--chunk-size", "8", "--tile", "8", "--force",
                                 "--certify-fraction", "1", "--no-preview"])
    assert r.exit_code == 0, r.output
    sc = Store(out).manifest.modalities[0].sample_certification
    assert sc.n_checked == 32 and sc.n_failed > 0 and len(sc.failed_indices) == sc.n_failed
    vals = np.asarray(zarr.open_group(str(out), mode="r")["cert/X1"][:])
    assert sorted(np.flatnonzero(vals >= 1).tolist()) == sc.failed_indices
    assert "failed samples" in r.output
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "wild.yaml"), "-n", "32", "--out", str(out),
                                 "--shard-size", "16", "--chunk-size", "8", "--tile", "8", "--force", "--resume",
                                 "--no-preview"])
    assert r.exit_code == 2 and "certify" in r.output


def test_stores_written_before_the_field_existed_keep_their_digest(tiny_dir, tmp_path):
    """A manifest without `sample_certification` (as every store before it was written) still matches its sealed
    sha256 and verifies: fields added later hash as absent when unset."""
    import json

    from mi_datagen.store.verify import verify

    out = tmp_path / "s.zarr"
    generate(tiny(tiny_dir), out, GenerateConfig(**SMALL), tiny_dir)
    path = out / "manifest.json"
    data = json.loads(path.read_text())
    for m in data["modalities"]:
        assert m.pop("sample_certification", "absent") is None
    path.write_text(json.dumps(data, indent=1))
    assert Store(out).manifest.modalities[0].sample_certification is None
    assert verify(str(out)).ok
