"""Your own estimator in the harness: a Python callable, or a command in any language.

The protocol (docs/benchmark-your-estimator.md):

- **Python.** ``fn(x_train, y_train, x_test, y_test, *, seed, **settings)`` gets float32/float64 numpy
  arrays (n, ...) split by the harness (seeded, the same split for every estimator) and returns the
  held-out estimate in nats: a float, or a mapping with ``"nats"`` and any extras (recorded with the
  run). A class works too: it is built with ``**settings`` and then called like the function (or its
  ``estimate`` method is).
- **Command line.** The harness writes ``x_train.npy``, ``y_train.npy``, ``x_test.npy``, ``y_test.npy``
  to a fresh folder and runs the command with ``{dir}`` and ``{seed}`` replaced (appended as
  ``DIR SEED`` when the command names neither; ``{python}`` is the harness's own interpreter); the
  last line of standard output is the estimate in nats, or a JSON object with ``"nats"``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mi_datagen.errors import EstimatorError
from mi_datagen.estimators.estimate import EstimateResult, _split

__all__ = ["resolve_callable", "estimate_external"]


def resolve_callable(ref: str) -> Callable[..., Any]:
    """``"package.module:name"`` (a function, or a class) → the object."""
    mod, _, name = ref.partition(":")
    if not mod or not name:
        raise EstimatorError(f"estimator callable {ref!r}: write it as package.module:name")
    try:
        obj = importlib.import_module(mod)
    except ImportError as err:
        raise EstimatorError(f"estimator callable {ref!r}: cannot import {mod!r} ({err})") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise EstimatorError(f"estimator callable {ref!r}: {mod!r} has no {name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EstimatorError(f"estimator callable {ref!r} is not callable")
    return obj


def _nats(value: Any, who: str) -> tuple[float, dict]:
    extras: dict = {}
    if isinstance(value, dict):
        if "nats" not in value:
            raise EstimatorError(f"{who}: a mapping result needs a 'nats' entry, got keys {sorted(value)}")
        extras = {k: v for k, v in value.items() if k != "nats"}
        value = value["nats"]
    try:
        nats = float(value)
    except (TypeError, ValueError):
        raise EstimatorError(f"{who}: returned {value!r:.80}, not a number of nats") from None
    if math.isnan(nats):
        raise EstimatorError(f"{who}: returned NaN")
    return nats, extras


def _run_callable(ref: str, arrays: dict[str, np.ndarray], seed: int, settings: dict) -> tuple[float, dict]:
    obj = resolve_callable(ref)
    if inspect.isclass(obj):
        inst: Any = obj(**settings)
        fn: Callable[..., Any] = getattr(inst, "estimate", inst)
        value = fn(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], seed=seed)
    else:
        value = obj(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], seed=seed, **settings)
    return _nats(value, ref)


def _run_command(command: str, arrays: dict[str, np.ndarray], seed: int, timeout_s: float) -> tuple[float, dict]:
    command = command.replace("{python}", shlex.quote(sys.executable))  # this interpreter, venv or not
    with tempfile.TemporaryDirectory(prefix="mi-datagen-est-") as d:
        for name, a in arrays.items():
            np.save(Path(d) / f"{name}.npy", a)
        if "{dir}" in command or "{seed}" in command:
            argv = shlex.split(command.replace("{dir}", shlex.quote(d)).replace("{seed}", str(seed)))
        else:
            argv = [*shlex.split(command), d, str(seed)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except FileNotFoundError:
            raise EstimatorError(f"estimator command {command!r}: {argv[0]!r} not found") from None
        except subprocess.TimeoutExpired:
            raise EstimatorError(f"estimator command {command!r}: no answer within {timeout_s:g} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise EstimatorError(f"estimator command {command!r} exited with {done.returncode}: {tail[:200]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise EstimatorError(f"estimator command {command!r} printed nothing; print the estimate in nats last")
    last = lines[-1].strip()
    value: Any = json.loads(last) if last.startswith("{") else last
    return _nats(value, f"estimator command {command!r}")


def estimate_external(x, y, *, seed: int = 0, callable: str | None = None, command: str | None = None,
                      test_fraction: float = 0.5, timeout_s: float = 3600.0, **settings) -> EstimateResult:
    """Split (seeded, as for the built-in estimators), then hand the four arrays to the callable or command."""
    if (callable is None) == (command is None):
        raise EstimatorError("an external estimator needs exactly one of `callable` or `command`")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise EstimatorError(f"x and y need the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    train, test = (t.numpy() for t in _split(x.shape[0], test_fraction, torch.Generator().manual_seed(seed)))
    arrays = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}
    t0 = time.perf_counter()
    if callable is not None:
        nats, extras = _run_callable(callable, arrays, seed, settings)
        who = callable
    elif command is not None:
        if settings:
            raise EstimatorError(f"estimator command {command!r}: settings {sorted(settings)} cannot be passed to a "
                                 "command; put them in the command line")
        nats, extras = _run_command(command, arrays, seed, timeout_s)
        who = command
    return EstimateResult("external", nats, None, [], time.perf_counter() - t0,
                          {"callable": callable, "command": command, "test_fraction": test_fraction, **settings,
                           **({"extras": extras} if extras else {})},
                          seed, len(train), len(test), f"external: {who}")
