#!/usr/bin/env python3
"""The compile farm against the same gcc commands run directly on the host.

    python3 tests/benchmarks/farm_bench.py [--units 300] [--true-tasks 2000] [--repeats 3]

Builds examples/compile-farm (a copy, project `farm-bench`; images already in
local storage are reused), then, in one run, times:

- the compile job (UNITS files, `gcc -O2 -c`) on a pod with 1 worker and on a
  pod with 2 workers, each worker running one task at a time
  (CP_WORKER_SLOTS=1), so that 2 workers compare with `xargs -P 2`;
- the same gcc commands on the host with `xargs -P 2` and with `xargs -P 1`;
- 2,000 tasks of `true` on 2 workers at their default slots (tasks per second).

The job time is `cpb submit`'s wall time (it includes starting cpb and
connecting). Targets (issue 13): 2 workers <= 0.6x 1 worker; the farm with
2 workers <= 1.25x host `xargs -P 2`. Prints a table; exits 1 if a target is
missed. Medians of --repeats runs, each with freshly deleted objects.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "compile-farm"
PROJECT = "farm-bench"
PODS = {  # pod -> (gcc replicas, slots per worker or None for the default, host port)
    "one": (1, 1, 14231),
    "two": (2, 1, 14232),
    "many": (2, None, 14233),
}


def spec_text(example: Path = EXAMPLE) -> str:
    text = (example / "cpb.yaml").read_text()
    head = text.split("\npods:\n")[0].replace("project: compile-farm", f"project: {PROJECT}")
    pods = ["pods:"]
    for name, (replicas, slots, port) in PODS.items():
        env = f", env: {{CP_WORKER_SLOTS: '{slots}'}}" if slots else ""
        pods += [f"  {name}:", "    containers:", "      - {image: nats}",
                 "      - {image: majordomo}",
                 f"      - {{image: worker-gcc, name: gcc, replicas: {replicas}{env},",
                 "         volumes: [{host: work, mount: /work}]}",
                 f'    ports: ["127.0.0.1:{port}:4222"]']
    return head + "\n" + "\n".join(pods) + "\n"


def cpb(root: Path, *argv: str, check: bool = True,
        repo: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`cpb ARGV` of the cpb tree `repo` (tls_ab.py runs two)."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    env.setdefault("CONTAINERS_CONF", str(repo / ".ci" / "containers.conf"))
    proc = subprocess.run([sys.executable, "-m", "cpb", "-f", str(root / "cpb.yaml"), *argv],
                          capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        sys.exit(f"cpb {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def prepare_project(root: Path, units: int, true_tasks: int, repo: Path = REPO) -> None:
    """A copy of `repo`'s compile-farm example in `root` with farm_bench's pods, a job
    of `units` files and one of `true_tasks` tasks of `true` (true.yaml)."""
    example = repo / "examples" / "compile-farm"
    if not (root / "cpb.yaml").exists():
        shutil.copytree(example, root, ignore=shutil.ignore_patterns("work", "job.yaml", ".cpb"))
    (root / "cpb.yaml").write_text(spec_text(example))
    subprocess.run([sys.executable, str(root / "make-job.py"), str(units), "--dir",
                    str(root)], check=True, capture_output=True)
    (root / "true.yaml").write_text("kind: gcc\ntasks:\n" + "".join(
        "  - {argv: ['true']}\n" for _ in range(true_tasks)))


def clean_objects(root: Path) -> None:
    obj = root / "work" / "obj"
    shutil.rmtree(obj, ignore_errors=True)
    obj.mkdir(parents=True)


def time_submit(root: Path, pod: str, job: str, repo: Path = REPO) -> float:
    started = time.monotonic()
    proc = cpb(root, "submit", pod, str(root / job), "--json", "--progress", "plain",
               check=False, repo=repo)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"cpb submit {pod} {job}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    tasks = json.loads(proc.stdout)["tasks"]
    assert all(t["state"] == "succeeded" for t in tasks)
    return seconds


def time_host(root: Path, units: int, parallel: int) -> float:
    names = "".join(f"unit_{i}\n" for i in range(units))
    started = time.monotonic()
    subprocess.run(["xargs", "-P", str(parallel), "-I", "{}", "gcc", "-O2", "-c",
                    "src/{}.c", "-o", "obj/{}.o"], input=names, text=True,
                   cwd=root / "work", check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--true-tasks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="project folder to use (default: a temp one)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="farm-bench-")) / "compile-farm"
    prepare_project(root, args.units, args.true_tasks)
    print(f"project {root}; building (images already in storage are reused)...", flush=True)
    started = time.monotonic()
    cpb(root, "build", "-j", "2")
    print(f"  build: {time.monotonic() - started:.0f} s", flush=True)

    rows: dict[str, list[float]] = {}
    for pod in PODS:
        cpb(root, "up", pod)
        try:
            time_submit(root, pod, "true.yaml")  # warm up: workers seen, consumer made
            for _ in range(args.repeats):
                if pod == "many":
                    rows.setdefault("true", []).append(time_submit(root, pod, "true.yaml"))
                else:
                    clean_objects(root)
                    rows.setdefault(pod, []).append(time_submit(root, pod, "job.yaml"))
        finally:
            cpb(root, "down", pod, check=False)
    for parallel in (1, 2):
        for _ in range(args.repeats):
            clean_objects(root)
            rows.setdefault(f"host{parallel}", []).append(time_host(root, args.units, parallel))

    med = {key: statistics.median(values) for key, values in rows.items()}
    one, two, host2, host1 = med["one"], med["two"], med["host2"], med["host1"]
    rate = args.true_tasks / med["true"]
    table = [
        ("host: xargs -P 1 gcc", f"{host1:.2f} s", "", ""),
        ("host: xargs -P 2 gcc", f"{host2:.2f} s", "", ""),
        ("farm, 1 worker (1 slot)", f"{one:.2f} s", "", ""),
        ("farm, 2 workers (1 slot each)", f"{two:.2f} s", "", ""),
        ("2 workers / 1 worker", f"{two / one:.2f}x", "<= 0.60x", two / one <= 0.60),
        ("farm 2 workers / host xargs -P 2", f"{two / host2:.2f}x", "<= 1.25x",
         two / host2 <= 1.25),
        (f"{args.true_tasks} x `true`, 2 workers (default slots)",
         f"{med['true']:.2f} s = {rate:.0f} tasks/s", "reported", ""),
    ]
    print(f"\ncompile job: {args.units} files, gcc -O2 -c; medians of {args.repeats}; "
          f"{os.cpu_count()} CPUs")
    print(f"| {'case':<48} | {'median':<22} | {'target':<9} | ok |")
    print(f"|{'-' * 50}|{'-' * 24}|{'-' * 11}|----|")
    missed = False
    for case, value, target, ok in table:
        mark = "" if ok == "" else ("ok" if ok else "MISSED")
        missed = missed or ok is False
        print(f"| {case:<48} | {value:<22} | {target:<9} | {mark} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
