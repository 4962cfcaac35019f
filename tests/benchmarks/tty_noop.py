"""A no-op `cpb build` on a terminal: this tree's cpb against a baseline's (issue 15).

    python tests/benchmarks/tty_noop.py PROJECT_DIR --baseline-src /path/to/other/src

PROJECT_DIR is a project already built (e.g. a copy of examples/farm after
`cpb build`). Each source tree gets its own copy of the project (the no-op
record names the code it was made with), one warm-up run, then the runs
alternate between the two trees so that load on the machine hits both
alike. Every run is under a pseudo-terminal (stdout is a tty, as for a
user), once by the fast path and once by the full path (CPB_NO_FAST_PATH=1).
Prints medians and the ratio this tree / baseline.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_on_pty(src: Path, project: Path, full: bool) -> tuple[float, bytes]:
    """Seconds for `cpb build` in `project` with stdout/stderr on a pty; its output."""
    env = {**os.environ, "PYTHONPATH": str(src), "TERM": "xterm-256color",
           "COLUMNS": "120", "LINES": "40"}
    env.setdefault("CONTAINERS_CONF", str(REPO / ".ci" / "containers.conf"))
    if full:
        env["CPB_NO_FAST_PATH"] = "1"
    else:
        env.pop("CPB_NO_FAST_PATH", None)
    master, slave = pty.openpty()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cpb", "build"], cwd=project, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the pty
                chunk = b""
            output += chunk
            if not chunk and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    proc.wait()
    took = time.perf_counter() - started
    os.close(master)
    if proc.returncode != 0:
        raise SystemExit(f"cpb build failed in {project} with {src}:\n{output.decode()}")
    return took, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    trees = {"baseline": args.baseline_src.resolve(), "this tree": REPO / "src"}
    with tempfile.TemporaryDirectory(prefix="cpb-tty-noop-") as tmp:
        copies = {}
        for name in trees:
            copies[name] = Path(tmp) / name.replace(" ", "-")
            shutil.copytree(args.project, copies[name], symlinks=True)
            (copies[name] / ".cpb" / "noop.json").unlink(missing_ok=True)
        results: dict[tuple[str, bool], list[float]] = {}
        outputs: dict[str, bytes] = {}
        for name, src in trees.items():  # warm: writes each copy's no-op record
            run_on_pty(src, copies[name], full=True)
        for _ in range(args.repeats):
            for full in (False, True):
                for name, src in trees.items():
                    took, out = run_on_pty(src, copies[name], full)
                    results.setdefault((name, full), []).append(took)
                    outputs[name] = out
    print(f"no-op `cpb build` under a pty, {args.repeats} runs each, medians (s):")
    print(f"{'path':<10} {'baseline':>9} {'this tree':>10} {'ratio':>6}")
    for full in (False, True):
        base = statistics.median(results[("baseline", full)])
        this = statistics.median(results[("this tree", full)])
        print(f"{'full' if full else 'fast':<10} {base:>9.3f} {this:>10.3f} {this / base:>6.2f}")
    for name, out in outputs.items():
        print(f"{name} prints: {out.decode(errors='replace').strip()!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
