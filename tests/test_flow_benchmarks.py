"""The flow issue's benchmark scripts run on a tiny flow: their records are consistent and coverage resumes."""

import json
import subprocess
import sys
from pathlib import Path

from .conftest import make_tiny_flow

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_flow_speed_and_certificate_coverage(tmp_path):
    make_tiny_flow(tmp_path / "a.pt", steps=8)
    make_tiny_flow(tmp_path / "b.pt", steps=4)
    out = run(ROOT / "benchmarks/flow_speed.py", "--flow", f"a={tmp_path / 'a.pt'}", "--flow", f"b={tmp_path / 'b.pt'}",
              "--threads", "1", "--n", "16", "--batch", "8", "--classes", "2", "--certify-n", "2",
              "--json", tmp_path / "s.json")
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    a, b = rows
    assert a["gflop_per_eval"] == b["gflop_per_eval"] > 0  # the same net
    assert a["gflop_per_image"] == 8 * a["gflop_per_eval"] and b["gflop_per_image"] == 4 * b["gflop_per_eval"]
    assert 0 < a["worst_rate"] < 1 and a["margin"] == 1 - a["worst_rate"] and a["roundtrip_rel_rms_max"] < 1e-4
    assert "ratio" in out and len(out.strip().splitlines()) == 4

    cov = tmp_path / "cov"
    args = (ROOT / "benchmarks/certificate_coverage.py", tmp_path / "b.pt", "--out", cov, "--n", "6", "--batch", "4")
    out = run(*args)
    recs = sorted(cov.glob("*-n6-s0.json"))
    assert [p.name for p in recs] == ["00-in-n6-s0.json", "00-off-n6-s0.json", "01-in-n6-s0.json", "01-off-n6-s0.json"]
    r = json.loads(recs[1].read_text())
    assert r["n"] == 6 and len(r["step_worst"]) == 4 and r["worst"] == max(r["step_worst"]) < 1 and r["failed"] == 0
    assert "coverage: 4 (class, distribution) sets, 24 latents" in out
    before = [p.stat().st_mtime_ns for p in recs]
    assert "coverage: 4" in run(*args) and [p.stat().st_mtime_ns for p in recs] == before  # never redone
    # another seed adds fresh latents: the summary pools them per (class, distribution)
    out = run(*args, "--seed", "1", "--classes", "0", "--dist", "off")
    fresh = json.loads((cov / "00-off-n6-s1.json").read_text())
    assert fresh["seed"] == 1 and fresh["worst"] != r["worst"]  # other latents
    assert "coverage: 4 (class, distribution) sets, 30 latents" in out
    row = next(line for line in out.splitlines() if line.split()[:3] == [fresh["cls"], "off", "12"])
    assert float(row.split()[3]) == round(max(r["worst"], fresh["worst"]), 3)
