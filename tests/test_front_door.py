"""The package's front door: every public name resolves, is documented, and importing it needs no torch."""

import subprocess
import sys

from typer.testing import CliRunner

import mi_datagen as mdg
from mi_datagen.cli import app


def test_every_public_name_resolves_and_has_a_docstring():
    for name in mdg.__all__:
        obj = getattr(mdg, name)
        if name == "__version__":
            assert isinstance(obj, str) and obj.count(".") == 2
            continue
        assert (getattr(obj, "__doc__", None) or "").strip(), f"mi_datagen.{name} has no docstring"


def test_import_does_not_import_torch():
    code = "import sys, mi_datagen; mi_datagen.load_and_expand; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_version_flag():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"mi-datagen {mdg.__version__}"


def test_info_labels_latent_entropies_as_latent():
    """`info` states latent-block entropies, not image entropies: their labels must say so."""
    r = CliRunner().invoke(app, ["info", "two_modalities"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "h(Z_X1)" in r.output and "latent entropy" in r.output and "h(theta)" in r.output
    assert "h(X1)" not in r.output and "h(X1,X2)" not in r.output
