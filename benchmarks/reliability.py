"""Reliability counts for docs/reliability.md: hostile specs (tried / answered / clean one-line errors /
tracebacks / over the time bound) and store corruptions (tried / caught by `verify`).

    python benchmarks/reliability.py --specs 300 --corruptions 100 [--big]

Specs come from the hypothesis strategy of tests/test_fuzz.py; ``--big`` adds d = 3072 shapes, where
degenerate blocks are known to take the slow dense route. Each spec runs `mi-datagen info` with a
time bound (``--seconds``).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _Late(Exception):
    pass


def specs(n: int, seconds: float, big: bool) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from typer.testing import CliRunner

    import tests.test_fuzz as fz
    from mi_datagen.cli import app

    strategy = fz.hostile_specs()
    if big:
        strategy = st.one_of(strategy, strategy.map(lambda s: {**s, "shape": [3, 32, 32]} if isinstance(s, dict)
                                                      and "shape" in s else s))
    counts = {"tried": 0, "answered": 0, "clean errors": 0, "tracebacks": 0, "over the bound": 0}
    examples: dict[str, list] = {"tracebacks": [], "over the bound": []}
    folder = Path(tempfile.mkdtemp())

    def late(*_):
        raise _Late

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=strategy)
    def run(spec):
        p = folder / "s.yaml"
        p.write_text(yaml.safe_dump(spec, allow_unicode=True))
        counts["tried"] += 1
        signal.signal(signal.SIGALRM, late)
        signal.alarm(int(seconds))
        t0 = time.perf_counter()
        try:
            r = CliRunner().invoke(app, ["info", str(p), "--json"])
        except _Late:
            r = None
        finally:
            signal.alarm(0)
        if r is None or isinstance(r.exception, _Late):
            counts["over the bound"] += 1
            examples["over the bound"].append(f"{time.perf_counter() - t0:.0f}s: {spec}"[:300])
        elif r.exit_code == 0:
            counts["answered"] += 1
        elif r.exit_code == 2 and isinstance(r.exception, SystemExit) and r.output.startswith("error:"):
            counts["clean errors"] += 1
        else:
            counts["tracebacks"] += 1
            examples["tracebacks"].append(f"{r.exception!r}: {spec}"[:300])

    run()
    return {"counts": counts, "examples": examples}


def corruptions(n: int, seed: int = 0) -> dict:
    import numpy as np

    from mi_datagen.api import load_and_expand
    from mi_datagen.store.generate import GenerateConfig, generate
    from mi_datagen.store.verify import verify
    from tests.conftest import TINY_SPEC, make_tiny_flow

    d = Path(tempfile.mkdtemp())
    make_tiny_flow(d / "tiny.pt")
    (d / "tiny.yaml").write_text(TINY_SPEC.format(checkpoint="tiny.pt", standardize="true"))
    clean = d / "clean.zarr"
    generate(load_and_expand(d / "tiny.yaml")[0], clean, GenerateConfig(n=48, shard_size=16, chunk_size=8, tile=8,
                                                                          progress=False), d)
    rng = np.random.default_rng(seed)
    caught = noop = 0
    missed = []
    for k in range(n):
        out = d / f"c{k}.zarr"
        shutil.copytree(clean, out)
        files = sorted(p for p in out.rglob("*") if p.is_file() and "/c/" in str(p))
        f = files[rng.integers(len(files))]
        kind = rng.choice(["flip", "delete", "swap", "truncate"])
        raw = bytearray(f.read_bytes())
        if kind == "flip":
            raw[rng.integers(len(raw))] ^= int(rng.integers(1, 256))
            f.write_bytes(bytes(raw))
        elif kind == "delete":
            f.unlink()
        elif kind == "truncate":
            f.write_bytes(bytes(raw[: int(rng.integers(len(raw)))]))
        else:
            siblings = [p for p in files if p.parent == f.parent and p != f]
            if not siblings:
                f.unlink()
            else:
                g = siblings[rng.integers(len(siblings))]
                a, b = f.read_bytes(), g.read_bytes()
                f.write_bytes(b)
                g.write_bytes(a)
                if a == b:  # two identical chunks (e.g. two done markers): nothing changed
                    noop += 1
                    shutil.rmtree(out)
                    continue
        if verify(str(out)).ok:
            missed.append(f"{kind} {f.relative_to(out)}")
        else:
            caught += 1
        shutil.rmtree(out)
    return {"tried": n, "no-op": noop, "caught": caught, "missed": missed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", type=int, default=300)
    ap.add_argument("--corruptions", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--big", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.specs > 0:
        s = specs(a.specs, a.seconds, a.big)
        print("specs:", s["counts"], flush=True)
        for kind, ex in s["examples"].items():
            for e in ex[:5]:
                print(f"  {kind}: {e}")
    c = corruptions(a.corruptions)
    print(f"corruptions: tried {c['tried']} ({c['no-op']} left the bytes unchanged), caught {c['caught']}, "
          f"missed {len(c['missed'])} {c['missed'][:5]}")
    print(f"reliability: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
