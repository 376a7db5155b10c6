"""Benchmark: generation overhead over the raw flows, MIDataset read speed, store size.

    python benchmarks/bench_store.py [--n-gen 128] [--n-read 10240] [--out /tmp/mi_bench]

1) ``generate`` images/s (two_modalities with the default flows) against the raw applied map
   (flow_map on the same tiles, same threads) measured in the same run. Steady state = the shard
   loop only; end to end adds certification, round trip and start-up.
2) MIDataset through a DataLoader (batch 256, shuffled) against a Dataset indexing in-memory
   tensors, two 3072-d float32 modalities. Targets: ≥ 50 % of the in-memory rate, ≥ 20k samples/s.
3) Store bytes per sample, against the raw float32 bytes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from mi_datagen.api import load_and_expand
from mi_datagen.data.dataset import MIDataset
from mi_datagen.flows.io import load_flow
from mi_datagen.flows.ode import Tiled, flow_map
from mi_datagen.store.generate import GenerateConfig, generate

ROOT = Path(__file__).resolve().parents[1]
PLAIN = """\
name: plain32
shape: [3, 32, 32]
nodes:
  - {name: c, kind: scalar, noise_std: 1.0}
  - {name: theta, kind: scalar, noise_std: 0.5}
  - {name: X1, kind: vector, noise_std: 1.0}
  - {name: X2, kind: vector, noise_std: 1.0}
edges:
  - {parent: c, child: theta, coef: 1.0}
  - {parent: c, child: X1, coef: 0.02, template: ones}
  - {parent: c, child: X2, coef: 0.02, template: ones}
target: theta
modalities: [{node: X1}, {node: X2}]
"""


class InMemory(Dataset):
    def __init__(self, x1, x2, theta):
        self.x1, self.x2, self.theta = x1, x2, theta

    def __len__(self):
        return self.x1.shape[0]

    def __getitem__(self, i):
        return {"index": i, "X1": self.x1[i], "X2": self.x2[i], "theta": self.theta[i]}


def rate(ds, batch: int, workers: int, epochs: int = 1) -> list[float]:
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                    generator=torch.Generator().manual_seed(0))
    out = []
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for b in dl:
            n += b["X1"].shape[0]
        out.append(n / (time.perf_counter() - t0))
    return out


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_generate(n: int, work: Path) -> None:
    spec = load_and_expand(ROOT / "dag_specs" / "two_modalities.yaml")[0]
    f = load_flow(spec.modalities[0].flow.checkpoint)  # the flow the spec resolves to
    net = Tiled(f.net, 8)
    torch.set_num_threads(1)
    z = torch.randn((n, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    flow_map(net, z[:8], 0, f.solver)  # warm-up
    t0 = time.perf_counter()
    for i in range(0, n, 64):
        flow_map(net, z[i:i + 64], 0, f.solver)
    raw = n / (time.perf_counter() - t0)
    print(f"1) generate vs raw flows: two_modalities, {f.path.name} (step {f.meta.get('step')}), {f.solver.method} "
          f"x{f.solver.steps}, tile 8, "
          f"1 thread per process, {n} samples x 2 modalities")
    print(f"   raw applied map (flow_map, 1 process): {raw:.2f} images/s")
    for workers in (1, 2):
        out = work / f"gen{workers}.zarr"
        t0 = time.perf_counter()
        man = generate(spec, out, GenerateConfig(n=n, shard_size=32, workers=workers, overwrite=True, progress=False),
                       ROOT / "dag_specs")
        e2e = 2 * n / (time.perf_counter() - t0)
        steady = 2 * n / man.timings_s["generate"]
        print(f"   generate, {workers} worker(s): steady {steady:.2f} images/s ({steady / raw:.2f}x raw), end to end "
              f"{e2e:.2f} images/s (certify {man.timings_s['certify']:.1f} s, total {man.timings_s['total']:.1f} s)")
    print(f"   store size: {du(out) / n:.0f} B/sample for 2 modalities + theta + 4 PMI arrays "
          f"(raw float32 images {2 * 3 * 32 * 32 * 4} B)")


def bench_read(n: int, work: Path) -> None:
    (work / "plain.yaml").write_text(PLAIN)
    spec = load_and_expand(work / "plain.yaml")[0]
    out = work / "plain.zarr"
    t0 = time.perf_counter()
    generate(spec, out, GenerateConfig(n=n, workers=2, overwrite=True, progress=False), work)
    print(f"\n2) MIDataset vs in-memory tensors: {n} samples, two 3x32x32 float32 modalities + theta, "
          f"DataLoader batch 256, shuffled (store written in {time.perf_counter() - t0:.1f} s)")
    ds = MIDataset(str(out))
    x = ds.__getitems__(list(range(n)))
    mem = InMemory(torch.stack([s["X1"] for s in x]), torch.stack([s["X2"] for s in x]),
                   torch.stack([s["theta"] for s in x]))
    del x
    for workers in (0, 2):
        base = max(rate(mem, 256, workers, epochs=2))
        cold, warm = rate(MIDataset(str(out)), 256, workers, epochs=2)
        print(f"   workers={workers}: in-memory {base:,.0f}/s; MIDataset first epoch {cold:,.0f}/s "
              f"({cold / base:.2f}x), second epoch {warm:,.0f}/s ({warm / base:.2f}x)")
    nocache = rate(MIDataset(str(out), cache_bytes=0), 256, 0)[0]
    print(f"   no shard cache (chunk reads only), workers=0: {nocache:,.0f}/s")
    print(f"\n3) store size: {du(out) / n:.0f} B/sample (Gaussian latents as images; raw float32 "
          f"{2 * 3 * 32 * 32 * 4 + 8} B incl. theta)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--n-read", type=int, default=10240)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mi_bench"))
    ap.add_argument("--skip-generate", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), torch {torch.__version__}")
    if not args.skip_generate:
        bench_generate(args.n_gen, args.out)
    bench_read(args.n_read, args.out)
    shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
