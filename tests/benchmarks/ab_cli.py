"""One `cpb` command line, this tree's cpb against other checkouts', interleaved.

    python tests/benchmarks/ab_cli.py --cwd examples/farm \\
        --baseline before=/tmp/old/src -- plan
    python tests/benchmarks/ab_cli.py --baseline before=/tmp/old/src@/tmp/old-farm \\
        --cwd /tmp/farm --full -- plan

Runs `python -m cpb ARGS` with each `src/` on PYTHONPATH, alternating so that
machine load hits every version alike, and prints for each the median wall
time and CPU time (its own and its children's: the storage listing counts)
and the ratio to this tree's. `NAME=SRC@CWD` runs that version in its own
copy of the project (the no-op record `.cpb/noop.json` lists the cpb code
that wrote it, so versions sharing one project would spoil each other's fast
path). `--full` sets CPB_NO_FAST_PATH=1. Every version's bytecode is compiled
first, as an install has it. A command that fails stops the run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE_SRC = Path(__file__).resolve().parents[2] / "src"


def run_once(src: Path, cwd: Path, args: Sequence[str], env: dict[str, str]
             ) -> tuple[float, float]:
    """(wall s, CPU s of the process and its children) of one `python -m cpb ARGS`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cpb", *args], cwd=cwd,
                          env={**env, "PYTHONPATH": str(src)}, capture_output=True,
                          check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{src}: cpb {' '.join(args)} exited {proc.returncode}:\n"
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=SRC[@CWD]",
                        help="another checkout's src/ (repeatable)")
    parser.add_argument("--cwd", type=Path, default=Path.cwd(),
                        help="where this tree's cpb runs (and a baseline without @CWD)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--full", action="store_true", help="CPB_NO_FAST_PATH=1")
    parser.add_argument("args", nargs="+", help="cpb's arguments (after --)")
    options = parser.parse_args(argv)
    versions: list[tuple[str, Path, Path]] = [("this tree", HERE_SRC, options.cwd)]
    for spec in options.baseline:
        name, _, rest = spec.partition("=")
        src, _, cwd = rest.partition("@")
        versions.append((name, Path(src), Path(cwd) if cwd else options.cwd))
    env = dict(os.environ)
    if options.full:
        env["CPB_NO_FAST_PATH"] = "1"
    for _, src, _ in versions:
        compileall.compile_dir(str(src), quiet=1)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in versions}
    for _ in range(options.repeats):
        for name, src, cwd in versions:
            times[name].append(run_once(src, cwd, options.args, env))
    mine = statistics.median(c for _, c in times["this tree"])
    print(f"cpb {' '.join(options.args)}{' (full path)' if options.full else ''}, "
          f"medians of {options.repeats}, interleaved")
    for name, rows in times.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"  {name:12} wall {wall:.3f} s  cpu {cpu:.3f} s  cpu / this tree's "
              f"{cpu / mine:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
