#!/usr/bin/env python3
"""The compile farm with two cpb trees, interleaved: did a change move the figure?

    python3 tests/benchmarks/tls_ab.py --before /path/to/old/checkout [--rounds 2]

Made for issue 14 (mutual TLS on the back-plane): a before/after figure on a
2-core machine whose speed drifts by a third between runs is only worth
something if both sides see the same machine. So the two trees take turns
(A B B A, `--rounds` times), and every timing of the farm is paired with the
same gcc commands run on the host just before it (`xargs -P 2`): the figure
compared is the farm's time over its own host control, the ratio
`farm / host`, not the raw seconds.

Each visit to a tree: `cpb build` (its images, already in local storage,
are reused), `cpb up two` (2 workers, 1 slot each), a warm-up job, then
`--repeats` x (host `xargs -P 2` gcc, the same UNITS files as a `cpb submit`
job), then `cpb up many` and 2,000 x `true` (tasks per second, where the
back-plane is nearly all the work), `cpb down`. The two trees use separate
project folders under `--dir`; the project name and ports are the same
(farm_bench.py's), so only one tree's pods are up at a time.

Prints every run, then per tree the medians, and after / before.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from farm_bench import (  # noqa: E402
    REPO,
    clean_objects,
    cpb,
    prepare_project,
    time_host,
    time_submit,
)


def prepare(repo: Path, root: Path, units: int, true_tasks: int) -> None:
    prepare_project(root, units, true_tasks, repo=repo)
    (root / "warm.yaml").write_text("kind: gcc\ntasks:\n" + "  - {argv: ['true']}\n" * 20)
    started = time.monotonic()
    cpb(root, "build", "-j", "2", repo=repo)
    print(f"{repo}: built in {time.monotonic() - started:.0f} s", flush=True)


def visit(repo: Path, root: Path, units: int, repeats: int,
          true_tasks: int) -> tuple[list[tuple[float, float]], float | None]:
    """[(host xargs -P 2, farm 2 workers)] * repeats, and the `true` rate."""
    cpb(root, "build", "-j", "2", repo=repo)  # retags `latest` to this tree's images
    pairs = []
    cpb(root, "up", "two", repo=repo)
    try:
        time_submit(root, "two", "warm.yaml", repo=repo)
        for _ in range(repeats):
            clean_objects(root)
            host = time_host(root, units, 2)
            clean_objects(root)
            pairs.append((host, time_submit(root, "two", "job.yaml", repo=repo)))
    finally:
        cpb(root, "down", "two", check=False, repo=repo)
    rate = None
    if true_tasks:
        cpb(root, "up", "many", repo=repo)
        try:
            time_submit(root, "many", "warm.yaml", repo=repo)
            rate = true_tasks / time_submit(root, "many", "true.yaml", repo=repo)
        finally:
            cpb(root, "down", "many", check=False, repo=repo)
    return pairs, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the old cpb checkout")
    parser.add_argument("--after", type=Path, default=REPO, help="the new one (this one)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cpb-tls-ab"),
                        help="where the two project copies live (kept between runs)")
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="pairs per visit")
    parser.add_argument("--rounds", type=int, default=2, help="A B B A, this many times")
    parser.add_argument("--true-tasks", type=int, default=2000, help="0: skip")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    roots = {name: args.dir / name / "compile-farm" for name in trees}
    for name, repo in trees.items():
        prepare(repo, roots[name], args.units, args.true_tasks)
    ratios: dict[str, list[float]] = {name: [] for name in trees}
    farms: dict[str, list[float]] = {name: [] for name in trees}
    rates: dict[str, list[float]] = {name: [] for name in trees}
    print("\n| visit | tree | host xargs -P 2 | farm, 2 workers | farm / host | `true` |")
    print("|---|---|---|---|---|---|")
    order = ["before", "after", "after", "before"] * args.rounds
    for number, name in enumerate(order, 1):
        pairs, rate = visit(trees[name], roots[name], args.units, args.repeats, args.true_tasks)
        for host, farm in pairs:
            ratios[name].append(farm / host)
            farms[name].append(farm)
            shown_rate = f"{rate:.0f} tasks/s" if rate is not None else ""
            print(f"| {number} | {name} | {host:.2f} s | {farm:.2f} s | {farm / host:.2f} "
                  f"| {shown_rate} |", flush=True)
        if rate is not None:
            rates[name].append(rate)
    print(f"\n{args.units} files, gcc -O2 -c; {len(order)} visits x {args.repeats} pairs")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")
    med = {name: statistics.median(ratios[name]) for name in trees}
    print(f"| farm / host xargs -P 2 (median of pairs) | {med['before']:.3f} | "
          f"{med['after']:.3f} | {med['after'] / med['before']:.3f}x |")
    raw = {name: statistics.median(farms[name]) for name in trees}
    print(f"| farm, 2 workers (median seconds) | {raw['before']:.2f} s | {raw['after']:.2f} s "
          f"| {raw['after'] / raw['before']:.3f}x |")
    if args.true_tasks:
        rate_med = {name: statistics.median(rates[name]) for name in trees}
        print(f"| {args.true_tasks} x `true` (median tasks/s) | {rate_med['before']:.0f} | "
              f"{rate_med['after']:.0f} | {rate_med['after'] / rate_med['before']:.3f}x the rate |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
