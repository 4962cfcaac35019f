"""The dispatch-rate benchmark still runs, plain and with mutual TLS (issue 14):
a small --compare run, checked for its rows and comparison lines, never for
its timings (those are printed, for docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_compares_plain_and_tls_in_one_run() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "benchmarks" / "runtime_bench.py"),
         "--compare", "--tasks", "30", "--workers", "1"],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    runs = [r for r in rows if r and r[0] in ("plain", "tls") and "succeeded" in r]
    assert [r[0] for r in runs] == ["plain", "tls"], done.stdout
    assert all("(30" in r for r in runs), done.stdout  # every task's result came back
    assert any(r[1:4] == ["tls", "/", "plain"] for r in rows if len(r) > 3), done.stdout
    assert "eof_received" not in done.stderr
