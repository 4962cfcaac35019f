"""Loading a spec in-process (`cpb.project.load_project_spec`), this tree's cpb
against other checkouts', in turns.

    python tests/benchmarks/load_ab.py --cwd /tmp/p500 --baseline main=/work/main/src

Each round starts one process per version (its `src/` on PYTHONPATH, the
versions in alternating order, so that machine load hits every version
alike); a process loads the spec once to warm up, then `--loads` times, and
reports the median. Prints, for each version, the median over the rounds
of those medians (wall and CPU), and the ratio of each to this tree's. The
project's `.cpb/validated.json` should hold every file's entry (a full
`cpb plan` that finds nothing to do writes it): a load that parses a
cpb.yaml or module.yaml stops the run, since it would measure the YAML
parser, not the load. Every version's bytecode is compiled first, as an
install has it.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE_SRC = Path(__file__).resolve().parents[2] / "src"


def worker(loads: int) -> int:
    """Load the spec of the current folder; print the median wall and CPU time of `loads`."""
    import cpb.spec.model
    import cpb.spec.modules
    from cpb.project import load_project_spec

    parsed: list[Any] = []
    for module in (cpb.spec.model, cpb.spec.modules):
        def counted(*args: Any, _load: Any = module.load_yaml, **kwargs: Any) -> Any:
            parsed.append(args[0])
            return _load(*args, **kwargs)
        module.load_yaml = counted  # type: ignore[attr-defined]
    load_project_spec(Path("cpb.yaml"))
    parsed.clear()
    times = []
    for _ in range(loads):
        wall, cpu = time.perf_counter(), time.process_time()
        load_project_spec(Path("cpb.yaml"))
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    print(statistics.median(w for w, _ in times), statistics.median(c for _, c in times),
          len(parsed))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=SRC",
                        help="another checkout's src/ (repeatable)")
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="the project's folder")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loads", type=int, default=7, help="loads per process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        return worker(options.loads)
    versions = [("this tree", HERE_SRC)]
    versions += [(name, Path(src)) for name, _, src in
                 (spec.partition("=") for spec in options.baseline)]
    for _, src in versions:
        compileall.compile_dir(str(src), quiet=1)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in versions}
    for round_ in range(options.rounds):
        for name, src in versions if round_ % 2 == 0 else versions[::-1]:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker",
                 "--loads", str(options.loads)], cwd=options.cwd,
                env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True,
                check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{name}: the load failed:\n{proc.stderr[-2000:]}")
            wall, cpu, parsed = proc.stdout.split()
            if parsed != "0":
                raise SystemExit(f"{name}: the load parsed {parsed} YAML files; write the "
                                 "memo first (a full `cpb plan` that finds nothing to do)")
            times[name].append((float(wall), float(cpu)))
    mine = statistics.median(w for w, _ in times["this tree"])
    print(f"load_project_spec in {options.cwd}: medians of {options.rounds} rounds of "
          f"{options.loads} loads (one process per version and round), in turns")
    for name, rows in times.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"  {name:12} wall {wall * 1000:6.1f} ms  cpu {cpu * 1000:6.1f} ms  "
              f"wall / this tree's {wall / mine:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
