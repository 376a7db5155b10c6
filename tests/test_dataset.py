"""MIDataset contract on small stores, and the stored latents' statistics against the spec's Σ."""

import json

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from mi_datagen.api import load_and_expand, solver_for
from mi_datagen.data.dataset import MIDataset
from mi_datagen.store.generate import GenerateConfig, generate
from mi_datagen.store.zarr_store import StoreError

torch.set_num_threads(1)

# no flows: the stored images are the latents themselves, so generation is fast and Σ is checkable
PLAIN = """\
name: plain
shape: [1, 2, 2]
nodes:
  - {name: c, kind: scalar, noise_std: 1.0}
  - {name: theta, kind: scalar, noise_std: 0.5}
  - {name: X1, kind: vector, noise_std: 1.0}
  - {name: X2, kind: vector, noise_std: 0.7}
edges:
  - {parent: c, child: theta, coef: 1.0}
  - {parent: c, child: X1, coef: 0.8, template: ones}
  - {parent: c, child: X2, coef: 0.5, template: {kind: onehot, index: 1}}
  - {parent: X1, child: X2, coef: 0.6}
target: theta
modalities:
  - {node: X1}
  - {node: X2}
"""


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    (d / "plain.yaml").write_text(PLAIN)
    spec = load_and_expand(d / "plain.yaml")[0]
    out = d / "plain.zarr"
    generate(spec, out, GenerateConfig(n=4000, shard_size=512, chunk_size=64, tile=8, latents=True, progress=False), d)
    return spec, out


def test_latent_statistics_match_the_spec_covariance(plain):
    """Sample covariance of (θ, X1, X2) from the store vs the dense Σ, every entry within 5 standard errors."""
    spec, out = plain
    g = zarr.open_group(str(out), mode="r")
    n = 4000
    data = np.concatenate([np.asarray(g["theta"][:])[:, None], np.asarray(g["z/X1"][:]).reshape(n, -1),
                           np.asarray(g["z/X2"][:]).reshape(n, -1)], axis=1)
    A = solver_for(spec).dense()
    full = np.concatenate([A["theta"], A["X1"], A["X2"]])
    sigma = full @ full.T
    emp = np.cov(data, rowvar=False, bias=True)
    se = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma ** 2) / n)
    assert np.all(np.abs(emp - sigma) < 5 * se), np.max(np.abs(emp - sigma) / se)
    # the stored images of a flow-less modality are the latents, cast to float32
    np.testing.assert_array_equal(np.asarray(g["x/X1"][:]), np.asarray(g["z/X1"][:]).astype(np.float32))


def test_mean_stored_pmi_estimates_the_mi(plain):
    spec, out = plain
    ds = MIDataset(str(out), with_pmi=True)
    pmi = np.asarray(zarr.open_group(str(out), mode="r")["pmi/X1__X2"][:])
    mi = ds.mi("X1", "X2")
    assert mi == pytest.approx(solver_for(spec).mi(["X1"], ["X2"]), rel=1e-12) and mi > 0.05
    assert abs(pmi.mean() - mi) < 4 * pmi.std() / np.sqrt(pmi.size)


def test_dataset_contract(plain):
    spec, out = plain
    ds = MIDataset(str(out), with_latents=True, with_pmi=True)
    assert len(ds) == 4000 and "plain" in repr(ds)
    s = ds[5]
    assert set(s) == {"index", "X1", "X2", "theta", "z/X1", "z/X2",
                      "pmi/theta__X1", "pmi/theta__X2", "pmi/theta__X1+X2", "pmi/X1__X2"}
    assert s["X1"].shape == (1, 2, 2) and s["X1"].dtype == torch.float32 and s["theta"].dtype == torch.float32
    assert s["pmi/X1__X2"].dtype == torch.float64 and s["index"] == 5
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(s["X2"].numpy(), np.asarray(g["x/X2"][5]))
    idx = [3999, 0, 700, 5, 700]
    batch = ds.__getitems__(idx)
    for i, b in zip(idx, batch):
        one = ds[i]
        assert all(torch.equal(one[k], b[k]) for k in one if k != "index") and b["index"] == i
    assert ds[-1]["index"] == 3999
    with pytest.raises(IndexError):
        ds[4000]
    # cache off: rows come from the inner chunks, same values
    cold = MIDataset(str(out), cache_bytes=0)
    assert all(torch.equal(cold[i]["X1"], ds[i]["X1"]) for i in (0, 1234, 3999))
    # subset, dtype, transform
    sub = MIDataset(str(out), modalities=["X2"], with_theta=False, dtype=torch.float64, transform=lambda x: 2 * x)
    assert set(sub[0]) == {"index", "X2"} and sub[0]["X2"].dtype == torch.float64
    np.testing.assert_allclose(sub[7]["X2"].numpy(), 2 * np.asarray(g["x/X2"][7], dtype=np.float64))
    assert ds.manifest.n == 4000 and ds.mi(["theta"], ["X1", "X2"]) > 0


def test_dataloader_with_workers_gives_the_same_batches(plain):
    _, out = plain
    ds = MIDataset(str(out))
    b0 = list(DataLoader(ds, batch_size=256, num_workers=0))
    b2 = list(DataLoader(ds, batch_size=256, num_workers=2))
    assert len(b0) == len(b2) == 16
    for x, y in zip(b0, b2):
        assert all(torch.equal(x[k], y[k]) for k in x)
    shuffled = next(iter(DataLoader(ds, batch_size=64, shuffle=True, num_workers=2,
                                    generator=torch.Generator().manual_seed(0))))
    np.testing.assert_array_equal(shuffled["X1"].numpy(),
                                  np.asarray(zarr.open_group(str(out), mode="r")["x/X1"][:])[shuffled["index"].numpy()])


def test_dataset_errors_name_the_path(plain, tmp_path):
    _, out = plain
    with pytest.raises(StoreError, match=f"{tmp_path / 'nope.zarr'}: no such dataset store"):
        MIDataset(str(tmp_path / "nope.zarr"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a mi-datagen store .no manifest.json."):
        MIDataset(str(tmp_path / "empty"))
    with pytest.raises(StoreError, match=r"unknown modalities \['X9'\]; the store has \['X1', 'X2'\]"):
        MIDataset(str(out), modalities=["X9"])
    other = tmp_path / "other"
    other.mkdir()
    man = json.loads((out / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**man, "format": "mi-datagen-store/99"}))
    with pytest.raises(StoreError, match="store format 'mi-datagen-store/99', this version .* cannot read it"):
        MIDataset(str(other))


def test_dataset_without_latents_refuses_with_latents(tmp_path):
    (tmp_path / "p.yaml").write_text(PLAIN)
    spec = load_and_expand(tmp_path / "p.yaml")[0]
    generate(spec, tmp_path / "s.zarr", GenerateConfig(n=20, shard_size=16, chunk_size=8, tile=8, progress=False), tmp_path)
    with pytest.raises(StoreError, match="has no latents .generate it with --latents."):
        MIDataset(str(tmp_path / "s.zarr"), with_latents=True)


def test_fsspec_url_store(tmp_path):
    """A store at an fsspec URL (here the in-process memory filesystem) is written and read like a path."""
    (tmp_path / "p.yaml").write_text(PLAIN)
    spec = load_and_expand(tmp_path / "p.yaml")[0]
    url = f"memory://mi-datagen-test/{tmp_path.name}.zarr"
    man = generate(spec, url, GenerateConfig(n=40, shard_size=16, chunk_size=8, tile=8, progress=False), tmp_path)
    ds = MIDataset(url, with_pmi=True)
    assert man.complete and len(ds) == 40 and ds.mi("X1", "X2") == man.mi("X1", "X2")
    local = tmp_path / "local.zarr"
    generate(spec, local, GenerateConfig(n=40, shard_size=16, chunk_size=8, tile=8, progress=False), tmp_path)
    assert all(torch.equal(ds[i]["X2"], MIDataset(str(local))[i]["X2"]) for i in (0, 17, 39))
