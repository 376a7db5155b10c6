from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "dag_specs"


@pytest.fixture
def specs_dir() -> Path:
    return SPECS
