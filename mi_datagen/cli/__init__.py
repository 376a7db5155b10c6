"""The ``mi-datagen`` command line: a thin typer layer over the library, one module per topic
(specs, flows, datasets, benchmarks). Errors a user can cause end as one line and exit code 2."""

from __future__ import annotations

from mi_datagen.cli import benchmarks, datasets, flows, specs  # noqa: F401  (register the commands)
from mi_datagen.cli._common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()
