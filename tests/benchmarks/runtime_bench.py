"""The runtime's dispatch rate: tasks/s for N tasks of `true` (issues 13, 14).

    python tests/benchmarks/runtime_bench.py                  # 2,000 tasks; 2 workers, then 1
    python tests/benchmarks/runtime_bench.py --tasks 500 --workers 1,2,4 --slots 2
    python tests/benchmarks/runtime_bench.py --tls            # the same with mutual TLS
    python tests/benchmarks/runtime_bench.py --compare --workers 2 --repeats 3
    python tests/benchmarks/runtime_bench.py --compare --baseline /tmp/base/src --workers 2
    python tests/benchmarks/runtime_bench.py --tls --workers 2 --profile /tmp/prof

Each case gets its own real nats-server (JetStream, a fresh store), MajorDomo
and workers as subprocesses on this host, as in tests/runtime. The time is
from the submission to the last result in the client's hands; process
start-up is not counted.

``--tls``: cpb's own CA and rendered nats.conf (mutual TLS, per-role
permissions), each component with its role's certificate, as in
tests/runtime/test_runtime_mtls.py. ``--compare``: plain and TLS interleaved
in one run (plain, tls, tls, plain, ... for --repeats), then the medians and
the TLS/plain differences and ratios. ``--baseline SRC``: MajorDomo and the
workers also run from another tree's src/ (say `mkdir -p /tmp/base && git
archive main src/cpb_runtime | tar -x -C /tmp/base`), interleaved with this
tree's, compared the same way (the client is always this tree's).

CPU per task (from /proc) is the steady figure on a busy machine; tasks/s
follows the load. Messages and bytes per task are nats-server's own counters
(/varz: what it received plus what it sent; /connz: per connection).
``--profile DIR``: MajorDomo and workers run under cProfile (wall-clock
times), one file each in DIR (`python -m pstats FILE`). ``--perf DIR``: `perf
record` of nats-server, MajorDomo and workers during each job (`perf report
-i FILE --sort pid,dso`: CPU in the interpreter, libssl/libcrypto, the kernel).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests" / "runtime")]

from runtime_pod import NatsServer, Pod, free_port  # noqa: E402
from tls_pod import role_env, role_settings, tls_server  # noqa: E402

from cpb.security.pki import MAJORDOMO_ROLE, SUBMITTER_ROLE, Pki, worker_role  # noqa: E402
from cpb_runtime import Client, JobOutcome, NatsSettings  # noqa: E402

KIND = "test"
COMPONENTS = ("majordomo", "workers", "tasks", "nats-server", "client")


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


def _traffic(server: NatsServer) -> dict[str, float]:
    """Messages and bytes through the server (received + sent), and the messages
    each side sent and received: "md>" is what MajorDomo sent, "md<" what it got."""
    varz = server.monitor("varz")
    out = {"msgs": varz["in_msgs"] + varz["out_msgs"],
           "bytes": varz["in_bytes"] + varz["out_bytes"],
           "md>": 0.0, "md<": 0.0, "w>": 0.0, "w<": 0.0}
    for conn in server.monitor("connz?limit=1024")["connections"]:
        side = ("md" if conn.get("name") == "majordomo"
                else "w" if conn.get("name", "").startswith("worker") else None)
        if side:
            out[f"{side}>"] += conn["in_msgs"]
            out[f"{side}<"] += conn["out_msgs"]
    return out


@dataclass
class BenchPod(Pod):
    """A Pod whose components carry their role's certificate (``pki``), and run
    under cProfile when ``profile_dir`` is set."""

    pki: Pki | None = None
    profile_dir: Path | None = None
    perf_dir: Path | None = None
    profile_tag: str = ""
    src: Path | None = None  # MajorDomo's and the workers' code, if not this tree's
    started: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(**extra)
        if self.src:
            env["PYTHONPATH"] = str(self.src)
        return env

    def _start(self, name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        if self.pki is not None:
            role = MAJORDOMO_ROLE if name == "majordomo" else worker_role(KIND)
            env = {**env, **role_env(self.pki, role)}
        if self.profile_dir is None:
            return super()._start(name, module, env)
        out = self.profile_dir / f"{name}.{self.profile_tag}.prof"
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cProfile", "-o", str(out), "-m", module], env=env,
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs[name] = proc
        return proc

    async def client(self, **options: Any) -> Client:
        options.setdefault("patience_s", 30.0)
        settings = (role_settings(self.nats.url, self.pki, SUBMITTER_ROLE) if self.pki
                    else NatsSettings(url=self.nats.url))
        return await Client.connect(settings, **options)

    def start_perf(self) -> subprocess.Popen[bytes] | None:
        """`perf record` of nats-server, MajorDomo and the workers (not the tasks)."""
        if self.perf_dir is None:
            return None
        assert self.nats.proc is not None
        pids = [self.nats.proc.pid, *(p.pid for p in self.procs.values())]
        out = self.perf_dir / f"{self.profile_tag}.data"
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-o", str(out),
                                 "-p", ",".join(map(str, pids))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # perf attaches
        return perf

    def stop_gently(self) -> None:
        """SIGTERM, so that cProfile writes its file (MajorDomo first: workers drain)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Run:
    mode: str
    workers: int
    seconds: float
    outcome: JobOutcome
    cpu: dict[str, float]  # seconds, per component
    traffic: dict[str, float]


async def _case(pod: BenchPod, workers: int, slots: int | None,
                tasks: int) -> tuple[float, JobOutcome, dict[str, float], dict[str, float]]:
    pod.start_majordomo(CP_LOG_LEVEL="WARNING")
    names = [f"w{i + 1}" for i in range(workers)]
    for name in names:
        extra = {"CP_WORKER_SLOTS": str(slots)} if slots else {}
        pod.start_worker(name, kind=KIND, slots=slots or (os.cpu_count() or 1),
                         CP_LOG_LEVEL="WARNING", **extra)
    async with await pod.client(poll_s=2.0) as client:
        await pod.wait_ready(client, *names, timeout=60)
        job = {"kind": KIND, "tasks": [["true"]] * tasks}
        perf = pod.start_perf()
        before, sent_before = _cpu_of(pod), _traffic(pod.nats)
        started = time.perf_counter()
        outcome = await client.run(job)
        seconds = time.perf_counter() - started
        after, sent_after = _cpu_of(pod), _traffic(pod.nats)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        return (seconds, outcome, {k: after[k] - before[k] for k in after},
                {k: sent_after[k] - sent_before[k] for k in sent_after})


@dataclass(frozen=True)
class Variant:
    mode: str  # "plain" or "tls"
    src: Path | None = None  # MajorDomo's and the workers' code: None, this tree's

    @property
    def label(self) -> str:
        return self.mode + ("@base" if self.src else "")


def measure(variant: Variant, workers: int, slots: int | None, tasks: int,
            profile_dir: Path | None = None, tag: str = "",
            perf_dir: Path | None = None) -> Run:
    with tempfile.TemporaryDirectory(prefix="cpb-runtime-bench-") as tmp:
        root = Path(tmp)
        (root / "pod").mkdir()
        pki: Pki | None = None
        server: NatsServer
        if variant.mode == "tls":
            pki = Pki(root / "pki")
            server = tls_server(root, pki, [KIND], monitor_port=free_port())
        else:
            server = NatsServer(free_port(), root / "jetstream", root / "nats-server.log",
                                monitor_port=free_port())
        server.start()
        pod = BenchPod(server, root / "pod", pki=pki, profile_dir=profile_dir,
                       perf_dir=perf_dir, profile_tag=tag or variant.label, src=variant.src)
        pod.settings["CP_ACK_WAIT"] = "10"
        try:
            seconds, outcome, cpu, traffic = asyncio.run(_case(pod, workers, slots, tasks))
            if profile_dir is not None:
                pod.stop_gently()
            return Run(variant.label, workers, seconds, outcome, cpu, traffic)
        finally:
            pod.stop_all()
            server.stop()


def _row(run: Run, tasks: int) -> str:
    per_task = [1000 * run.cpu[k] / tasks for k in COMPONENTS]
    ran_by = sorted({r.worker for r in run.outcome.results})
    return (f"{run.mode:>10} {run.workers:>7} {run.seconds:>7.2f} {tasks / run.seconds:>7.0f}  "
            + " ".join(f"{v:>5.2f}" for v in per_task) + f" {sum(per_task):>5.2f}  "
            f"{run.traffic['msgs'] / tasks:>5.1f} {run.traffic['bytes'] / tasks / 1024:>5.2f}  "
            + "/".join(f"{run.traffic[k] / tasks:.1f}" for k in ("md>", "md<", "w>", "w<"))
            + f"  {run.outcome.state} ({run.outcome.counts.succeeded} ok; {', '.join(ran_by)})")


HEADER = (f"{'variant':>10} {'workers':>7} {'seconds':>7} {'tasks/s':>7}  "
          f"{'MD':>5} {'wrks':>5} {'tasks':>5} {'nats':>5} {'clnt':>5} {'total':>5}  "
          f"{'msgs':>5} {'KiB':>5}  MD>/MD</W>/W<  outcome")
LEGEND = ("CPU ms per task of MajorDomo, the workers, the tasks, nats-server, the client, "
          "in all; messages and KiB through nats-server per task; messages per task "
          "MajorDomo sent (MD>) and got (MD<), the workers sent (W>) and got (W<)")


def _medians(runs: list[Run], tasks: int) -> dict[str, float]:
    figures: dict[str, float] = {
        "tasks/s": statistics.median(tasks / r.seconds for r in runs),
        "msgs/task": statistics.median(r.traffic["msgs"] / tasks for r in runs),
        "KiB/task": statistics.median(r.traffic["bytes"] / tasks / 1024 for r in runs)}
    for k in COMPONENTS:
        figures[k] = statistics.median(1000 * r.cpu[k] / tasks for r in runs)
    totals = [1000 * sum(r.cpu[k] for k in COMPONENTS) / tasks for r in runs]
    figures["total"] = statistics.median(totals)
    figures["min total"] = min(totals)  # the run least disturbed by the machine's load
    return figures


def _compare(runs: list[Run], tasks: int, variants: list[Variant]) -> list[str]:
    """Medians of each variant, then TLS against plain (and this tree against the
    baseline), as differences and ratios."""
    header = ("tasks/s", *COMPONENTS, "total", "min total", "msgs/task", "KiB/task")
    per_case = len(runs) // len(variants) // len({r.workers for r in runs})
    lines = ["", f"medians of {per_case} run(s) per variant and worker count;"
             " CPU in ms per task:",
             f"{'workers':>7} {'':>21} " + " ".join(f"{h:>11}" for h in header)]
    # (a, b): b against a. TLS against plain; this tree against the baseline.
    pairs = [(v.label, v.label.replace("plain", "tls")) for v in variants
             if v.mode == "plain"] + [(v.label, v.mode) for v in variants if v.src]
    for workers in sorted({r.workers for r in runs}, reverse=True):
        med = {v.label: _medians([r for r in runs if r.workers == workers
                                  and r.mode == v.label], tasks) for v in variants}
        for label, values in med.items():
            lines.append(f"{workers:>7} {label:>21} "
                         + " ".join(f"{values[h]:>11.2f}" for h in header))
        for a, b in pairs:
            lines.append(f"{workers:>7} {b + ' - ' + a:>21} "
                         + " ".join(f"{med[b][h] - med[a][h]:>+11.2f}" for h in header))
            lines.append(f"{workers:>7} {b + ' / ' + a:>21} "
                         + " ".join(f"{med[b][h] / med[a][h]:>10.2f}x" if med[a][h]
                                    else f"{'-':>11}" for h in header))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", default="2,1", help="worker counts, comma-separated")
    parser.add_argument("--slots", type=int, default=None,
                        help="tasks at once per worker (default: its CPU count)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tls", action="store_true",
                      help="mutual TLS with cpb's own PKI and nats.conf")
    mode.add_argument("--compare", action="store_true",
                      help="plain and TLS interleaved, then medians and TLS/plain ratios")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each variant (interleaved: A B B A A B ...)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="SRC",
                        help="also run MajorDomo and workers from another tree's src/ "
                        "(e.g. a worktree of main), interleaved with this tree's")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run MajorDomo and workers under cProfile, files into DIR")
    parser.add_argument("--perf", type=Path, default=None, metavar="DIR",
                        help="`perf record` nats-server, MajorDomo and workers during each "
                        "job, files into DIR (perf report -i FILE --sort pid,dso)")
    args = parser.parse_args(argv)
    # asyncio's "returning true from eof_received() has no effect when using ssl"
    # when a TLS server closes: noise here, as in `cpb submit`.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    for folder in (args.profile, args.perf):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    print(f"host: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}; "
          f"{args.tasks} tasks of `true`; slots per worker: {args.slots or os.cpu_count()}")
    print(LEGEND)
    print(HEADER)
    variants = [Variant("plain"), Variant("tls")] if args.compare else [
        Variant("tls" if args.tls else "plain")]
    if args.baseline:
        variants = [*(Variant(v.mode, args.baseline.resolve()) for v in variants), *variants]
    runs: list[Run] = []
    failed = False
    for workers in (int(w) for w in args.workers.split(",")):
        for i in range(args.repeats):
            # ABBA...: each variant runs as often early as late
            for variant in (variants if i % 2 == 0 else variants[::-1]):
                run = measure(variant, workers, args.slots, args.tasks, args.profile,
                              tag=f"{variant.label}.w{workers}.{i + 1}", perf_dir=args.perf)
                runs.append(run)
                print(_row(run, args.tasks), flush=True)
                failed |= not run.outcome.succeeded
    if len(variants) > 1:
        print("\n".join(_compare(runs, args.tasks, variants)))
    if args.profile:
        print(f"profiles: {args.profile}/*.prof (python -m pstats FILE; sort tottime; stats 30)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
