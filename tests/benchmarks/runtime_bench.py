"""The runtime's dispatch rate: tasks/s for N tasks of `true` (issue 13).

    python tests/benchmarks/runtime_bench.py                  # 2,000 tasks; 2 workers, then 1
    python tests/benchmarks/runtime_bench.py --tasks 500 --workers 1,2,4 --slots 2

Each case gets its own real nats-server (JetStream, a fresh store), MajorDomo
and workers as subprocesses on this host, as in tests/runtime. The time is
from the submission to the last result in the client's hands; process
start-up is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests" / "runtime")]

from runtime_pod import NatsServer, Pod, free_port  # noqa: E402

from cpb_runtime import JobOutcome  # noqa: E402


def _cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process itself, and of its reaped children."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _cpu_of(pod: Pod) -> dict[str, float]:
    assert pod.nats.proc is not None
    usage = {"nats-server": _cpu_s(pod.nats.proc.pid)[0], "client": time.process_time(),
             "majordomo": _cpu_s(pod.procs["majordomo"].pid)[0], "workers": 0.0, "tasks": 0.0}
    for name, proc in pod.procs.items():
        if name != "majordomo":
            own, children = _cpu_s(proc.pid)
            usage["workers"] += own
            usage["tasks"] += children
    return usage


async def _case(pod: Pod, workers: int, slots: int | None,
                tasks: int) -> tuple[float, JobOutcome, dict[str, float]]:
    pod.start_majordomo(CP_LOG_LEVEL="WARNING")
    names = [f"w{i + 1}" for i in range(workers)]
    for name in names:
        extra = {"CP_WORKER_SLOTS": str(slots)} if slots else {}
        pod.start_worker(name, slots=slots or (os.cpu_count() or 1), CP_LOG_LEVEL="WARNING",
                         **extra)
    async with await pod.client(poll_s=2.0) as client:
        await pod.wait_ready(client, *names, timeout=60)
        job = {"kind": "test", "tasks": [["true"]] * tasks}
        before = _cpu_of(pod)
        started = time.perf_counter()
        outcome = await client.run(job)
        seconds = time.perf_counter() - started
        after = _cpu_of(pod)
        return seconds, outcome, {k: after[k] - before[k] for k in after}


def measure(workers: int, slots: int | None,
            tasks: int) -> tuple[float, JobOutcome, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="cpb-runtime-bench-") as tmp:
        root = Path(tmp)
        (root / "pod").mkdir()
        server = NatsServer(free_port(), root / "jetstream", root / "nats-server.log")
        server.start()
        pod = Pod(server, root / "pod")
        pod.settings["CP_ACK_WAIT"] = "10"
        try:
            return asyncio.run(_case(pod, workers, slots, tasks))
        finally:
            pod.stop_all()
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", default="2,1", help="worker counts, comma-separated")
    parser.add_argument("--slots", type=int, default=None,
                        help="tasks at once per worker (default: its CPU count)")
    args = parser.parse_args(argv)
    print(f"host: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}; "
          f"{args.tasks} tasks of `true`; slots per worker: {args.slots or os.cpu_count()}")
    print(f"{'workers':>7} {'seconds':>8} {'tasks/s':>8}  CPU ms per task (MajorDomo, workers, "
          "tasks, nats-server, client)  outcome")
    failed = False
    for workers in (int(w) for w in args.workers.split(",")):
        seconds, outcome, cpu = measure(workers, args.slots, args.tasks)
        ran_by = sorted({r.worker for r in outcome.results})
        per_task = ", ".join(f"{1000 * cpu[k] / args.tasks:.2f}"
                             for k in ("majordomo", "workers", "tasks", "nats-server", "client"))
        print(f"{workers:>7} {seconds:>8.2f} {args.tasks / seconds:>8.0f}  {per_task}  "
              f"{outcome.state} ({outcome.counts.succeeded} succeeded; ran on "
              f"{', '.join(ran_by)})", flush=True)
        failed |= not outcome.succeeded
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
