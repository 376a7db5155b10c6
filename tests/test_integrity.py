"""Every corruption a store can suffer is caught: by `verify` (which names it), and by the read path
(Store / MIDataset) where it touches what is read. Each case here was once served as valid data."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from mi_datagen.api import load_and_expand
from mi_datagen.cli import app
from mi_datagen.data.dataset import MIDataset
from mi_datagen.errors import StoreError
from mi_datagen.store.generate import GenerateConfig, generate
from mi_datagen.store.store import Store
from mi_datagen.store.verify import verify

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pristine(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("integrity") / "s.zarr"
    spec = load_and_expand(tiny_dir / "tiny.yaml")[0]
    generate(spec, out, GenerateConfig(n=64, shard_size=16, chunk_size=8, tile=8, progress=False), tiny_dir)
    return out


@pytest.fixture
def store(pristine, tmp_path):
    out = tmp_path / "s.zarr"
    shutil.copytree(pristine, out)
    return out


def shard_file(store, array, i):
    parts = [str(i)] + ["0"] * (3 if array.startswith("x/") else 0)
    return store.joinpath(*array.split("/"), "c", *parts)


def read_all(store):
    ds = MIDataset(str(store))
    return [ds[i] for i in range(len(ds))]


def test_a_pristine_store_verifies(store):
    rep = verify(str(store))
    assert rep.ok, rep.problems
    # theta, X1, X2 and the PMI of the four unconditional MIs (θ;X1, θ;X2, θ;X1+X2, X1;X2)
    assert rep.shards_checked == 4 and rep.arrays_checked == 7
    r = CliRunner().invoke(app, ["verify", str(store)])
    assert r.exit_code == 0 and "OK" in r.output


def test_a_flipped_byte_in_a_chunk(store):
    f = shard_file(store, "x/X1", 1)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 3] ^= 0x10
    f.write_bytes(bytes(raw))
    rep = verify(str(store))
    assert any("shard 1 of 'x/X1'" in p for p in rep.problems), rep.problems
    with pytest.raises(StoreError, match=r"'X1' cannot be read .*checksum"):
        read_all(store)


@pytest.mark.parametrize("case", ["swapped", "other modality", "deleted"])
def test_a_shard_file_swapped_replaced_or_deleted(store, case):
    a, b = shard_file(store, "x/X1", 0), shard_file(store, "x/X1", 2)
    if case == "swapped":
        tmp = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(tmp)
    elif case == "other modality":
        a.write_bytes(shard_file(store, "x/X2", 0).read_bytes())
    else:
        a.unlink()  # read back as the fill value, zeros
    rep = verify(str(store))
    assert any("shard 0 of 'x/X1'" in p and "does not match its digest" in p for p in rep.problems), rep.problems
    with pytest.raises(StoreError, match=r"shard 0 of 'x/X1' does not match the digest written with it"):
        read_all(store)
    r = CliRunner().invoke(app, ["verify", str(store)])
    assert r.exit_code == 1 and "problem" in r.output


def test_a_done_marker_set_on_an_unwritten_shard(store):
    import zarr

    g = zarr.open_group(str(store), mode="r+")
    g["digests"][3] = 0  # as if shard 3 had never been written, its done marker set by hand
    for key in ("theta", "x/X1", "x/X2"):
        f = shard_file(store, key, 3)
        f.unlink()
    rep = verify(str(store))
    assert any("shard 3 is marked done but has no digest" in p for p in rep.problems), rep.problems


@pytest.mark.parametrize("edit", ["complete", "mi", "n"])
def test_an_edited_manifest_is_refused(store, edit):
    m = store / "manifest.json"
    raw = json.loads(m.read_text())
    if edit == "complete":
        raw["complete"] = False
    elif edit == "mi":
        raw["info"]["mutual_information"][0]["nats"] = 5.0
    else:
        raw["n"] = 80
    m.write_text(json.dumps(raw))
    with pytest.raises(StoreError, match="does not match its recorded sha256"):
        Store(store)
    with pytest.raises(StoreError, match="does not match its recorded sha256"):
        MIDataset(str(store))
    assert not verify(str(store)).ok


def test_an_edited_and_resealed_manifest_is_caught_by_verify(store):
    """Someone edits n and recomputes the manifest digest: the arrays still disagree."""
    from mi_datagen.store.manifest import DatasetManifest

    m = store / "manifest.json"
    man = DatasetManifest.model_validate_json(m.read_text())
    m.write_text(man.model_copy(update={"n": 80}).sealed().model_dump_json())
    rep = verify(str(store))
    assert any("has 64 rows, the manifest says n = 80" in p for p in rep.problems), rep.problems


@pytest.mark.parametrize("text, message", [
    ('{"format": "mi-datagen-store/1", "n":', "is not valid JSON"),
    ("", "is not valid JSON"),
    ("[]", "holds a list, not a manifest"),
    ('{"format": "mi-datagen-store/1", "n": 3}', "is not a valid manifest"),
])
def test_a_damaged_manifest_is_one_line(store, text, message):
    (store / "manifest.json").write_text(text)
    with pytest.raises(StoreError, match=message):
        Store(store)
    r = CliRunner().invoke(app, ["inspect", str(store)])
    assert r.exit_code == 2 and message.split()[0] in r.output and "Traceback" not in r.output
