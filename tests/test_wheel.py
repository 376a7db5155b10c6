"""The wheel works outside the checkout: built from the repo, installed without network into a temporary
folder, it finds its shipped examples and flows (sha256-pinned) from any directory."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from mi_datagen.cli import app; sys.argv[0] = 'mi-datagen'; app()"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the tracked tree")
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy of the tracked files, so the checkout's build/ and egg-info are never touched
    src = out / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        rel = Path(f.decode())
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out / "dist"), str(src)], check=True, capture_output=True)
    (whl,) = (out / "dist").glob("mi_datagen-*.whl")
    return whl


def test_wheel_carries_examples_flows_and_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mi_datagen/examples/two_modalities.yaml" in names
    assert {"mi_datagen/checkpoints/registry.json", "mi_datagen/checkpoints/default.pt",
            "mi_datagen/checkpoints/default-v2.pt", "mi_datagen/checkpoints/default-v2.pt.sha256"} <= names
    assert "mi_datagen/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any("train_state" in n for n in names)


def test_installed_wheel_runs_info_and_generate_from_elsewhere(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop("MI_DATAGEN_FLOWS", None)
    env.pop("MI_DATAGEN_CHECKPOINTS", None)

    def cli(*args):
        return subprocess.run([sys.executable, "-c", CLI, *args], cwd=work, env=env, capture_output=True, text=True)

    where = subprocess.run([sys.executable, "-c", "import mi_datagen; print(mi_datagen.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the checkout
    r = cli("info", "two_modalities")
    assert r.returncode == 0, r.stderr
    assert "I(X1; X2)" in r.stdout or "I(X1;X2)" in r.stdout
    r = cli("generate", "two_modalities", "-n", "8", "--shard-size", "8", "--chunk-size", "8", "--tile", "8",
            "--out", "t.zarr", "--no-preview", "--n-check", "2")
    assert r.returncode == 0, r.stderr
    assert "complete" in r.stdout and "certified" in r.stdout
    assert (work / "t.zarr" / "manifest.json").is_file()
