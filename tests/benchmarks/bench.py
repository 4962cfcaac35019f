"""cpb's benchmark: no-op, scaling, incremental, cold, parallel (issue 6).

    python tests/benchmarks/bench.py                 # everything (~9 min on a quiet machine)
    python tests/benchmarks/bench.py --cases noop,incremental --images 200 --repeats 3
    doit bench                                        # the same, from the repo's dodo.py

Prints a table of medians and ratios (a no-op ratio to bare doit is the median of
each round's ratio); exits 1 when a target is missed.
Synthetic projects replace cekit's build with a one-line `podman build`
(see synthetic.py); their no-op and plan paths run the real cpb, the real
doit and the real podman queries. The example cases use real cekit builds
on a busybox base.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import cProfile
import io
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(HERE)]
os.environ.setdefault("CONTAINERS_CONF", str(REPO / ".ci" / "containers.conf"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])

import networkx as nx  # noqa: E402
from synthetic import (  # noqa: E402
    StubRunner,
    artifact_files,
    built,
    make_synthetic,
    module_files,
    preload_images,
    remove_project_images,
)

from cpb.adapters.runner import ProcessRunner  # noqa: E402
from cpb.graph import ordered, split_task  # noqa: E402
from cpb.noop.record import RECORD  # noqa: E402
from cpb.project import Project, open_project  # noqa: E402
from cpb.state import RACY_MARGIN_NS  # noqa: E402
from cpb.tasks.doitapp import run_doit  # noqa: E402
from cpb.tasks.images import do_render  # noqa: E402
from cpb.tasks.plan import make_plan  # noqa: E402
from fakes import FakeRunner  # noqa: E402
from helpers import build_file_tree, busybox_rootfs_tar  # noqa: E402

ALL_CASES = ("noop", "scaling", "incremental", "today", "cold", "parallel")
NOOP_LIMIT_S = 1.5
NOOP_RATIO = 2.0
COLD_OVERHEAD = 0.10
PY = sys.executable


@dataclass
class Row:
    case: str
    what: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: reported, no target

    def cells(self) -> list[str]:
        verdict = "" if self.ok is None else ("ok" if self.ok else "MISSED")
        return [self.case, self.what, self.value, self.target, verdict]


@dataclass
class Bench:
    repeats: int
    work: Path
    quiet: bool
    rows: list[Row] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)

    def project_name(self, label: str) -> str:
        name = f"bench-{uuid.uuid4().hex[:6]}-{label}"
        self.projects.append(name)
        return name

    def remove_images(self) -> None:
        say("removing the benchmark's images")
        for name in self.projects:
            remove_project_images(name)
        self.projects.clear()

    def add(self, *args: object, **kw: object) -> Row:
        row = Row(*args, **kw)  # type: ignore[arg-type]
        self.rows.append(row)
        say(" | ".join(c for c in row.cells() if c))
        return row


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def timed(args: Sequence[str], cwd: Path, quiet: bool = True,
          env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False,
                          env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took


def retried(run: Callable[[], float], attempts: int = 3) -> float:
    """`podman images` fails when another process removes an image mid-listing."""
    for attempt in range(attempts):
        try:
            return run()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def rounds(commands: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run the commands interleaved, `repeats` rounds; the seconds of each, by round."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(repeats):
        for name, run in commands.items():
            times[name].append(run())
    return times


def medians(commands: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Run the commands interleaved, `repeats` times each; median seconds of each."""
    return {k: statistics.median(v) for k, v in rounds(commands, repeats).items()}


def paired_ratio(times: dict[str, list[float]], what: str, baseline: str) -> float:
    """The median over rounds of `what`'s time / `baseline`'s in the same round.

    The machine's speed drifts over minutes (a shared host): a ratio taken
    within each round cancels the drift that a ratio of two medians keeps.
    """
    return statistics.median(a / b for a, b in zip(times[what], times[baseline], strict=True))


FULL_PATH_IMPORTS = "import cpb.cli.app, cpb.project, cpb.tasks.plan, cpb.noop.write"


def cpb(*argv: str) -> list[str]:
    return [PY, "-m", "cpb", *argv]


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


# -- the synthetic project and the bare-doit baseline ---------------------------

def synthetic_project(bench: Bench, images: int, label: str) -> tuple[Path, str]:
    name = bench.project_name(label)
    root = bench.work / name
    make_synthetic(root, name, images)
    return root, name


def quiet_doit(project: Project, jobs: int = 1) -> int:
    """run_doit with its progress lines in .cpb/bench.log instead of stdout."""
    log = project.state.root / "bench.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle, contextlib.redirect_stdout(handle), project.state.lock():
        return run_doit(project, [], jobs=jobs)


def stub_build(root: Path, jobs: int = 2) -> FakeRunner:
    runner = StubRunner()
    project = open_project(root / "cpb.yaml", runner=runner)
    code = quiet_doit(project, jobs)
    if code != 0:
        raise RuntimeError(f"stub build of {root} failed ({code}); see {root}/.cpb/logs")
    return runner


BARE_DODO = '''\
import json
from pathlib import Path

DOIT_CONFIG = {"dep_file": "bare.json", "backend": "json", "verbosity": 0}
TASKS = json.loads(Path("tasks.json").read_text())


def _nothing():
    return None


def task_bare():
    for t in TASKS:
        task = {"name": t["name"], "actions": [_nothing], "file_dep": t["file_dep"],
                "task_dep": ["bare:" + d for d in t["task_dep"]]}
        if not t["file_dep"]:
            task["uptodate"] = [True]
        yield task
'''


def bare_doit_project(project: Project, folder: Path) -> tuple[Path, int, int]:
    """A dodo.py with one trivial task per cpb task and the same files as file_dep.

    Returns (folder, tasks, files): render tasks depend on the image's module
    files, build tasks on its artifacts, rootfs tasks on the tar: the files
    cpb hashes for a no-op.
    """
    import json

    root = project.spec.root
    tasks, files = [], 0
    for task in ordered(project.graph):
        kind, image = split_task(task)
        if kind == "render":
            deps = [str(p) for p in module_files(root, image)]
        elif kind == "build":
            deps = [str(p) for p in artifact_files(root, image)]
        elif kind == "rootfs":
            deps = [str(root / "busybox.tar")]
        else:
            deps = []
        files += len(deps)
        tasks.append({"name": task, "file_dep": deps,
                      "task_dep": sorted(project.graph.predecessors(task))})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tasks.json").write_text(json.dumps(tasks))
    (folder / "dodo.py").write_text(BARE_DODO)
    timed([PY, "-m", "doit"], folder)  # the first run executes everything
    return folder, len(tasks), files


def count_noop(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Processes started by an in-process no-op plan and no-op build."""
    plan_runner = ProcessRunner()
    planned = make_plan(open_project(root / "cpb.yaml", runner=plan_runner))
    pending = [p.task for p in planned if p.pending]
    if pending:
        raise RuntimeError(f"not a no-op: {len(pending)} pending, e.g. {pending[:3]}")
    build_runner = ProcessRunner()
    code = quiet_doit(open_project(root / "cpb.yaml", runner=build_runner))
    if code != 0:
        raise RuntimeError("no-op build failed")
    return dict(plan_runner.started), dict(build_runner.started)


def count_fast(root: Path) -> dict[str, int]:
    """Processes started by the fast path of a no-op `cpb plan` (in-process)."""
    import cpb.cli.fastpath
    import cpb.cli.options

    counting = FakeRunner(passthrough=ProcessRunner())  # records, runs everything for real
    real = cpb.cli.options.make_runner
    cpb.cli.options.make_runner = lambda *lock: counting  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = cpb.cli.fastpath.fast_path(["-f", str(root / "cpb.yaml"), "plan"])
    finally:
        cpb.cli.options.make_runner = real
    if code != 0:
        raise RuntimeError(f"the fast path did not answer a no-op plan in {root}")
    return dict(counting.started)


def external(counts: dict[str, int]) -> int:
    return sum(n for k, n in counts.items() if k in ("podman", "skopeo", "cekit", "buildah"))


# -- cases ------------------------------------------------------------------------

def case_noop(bench: Bench, images: int, small: int, profile: bool) -> Path:
    say(f"noop: making a {images}-image project; its images go into local storage "
        "with one `podman load`, then one real `cpb build` renders and records them")
    root, _ = synthetic_project(bench, images, f"noop{images}")
    start = time.perf_counter()
    setup_built(root)
    bench.add("noop", f"setup: {images} images loaded, first `cpb build`",
              fmt_s(time.perf_counter() - start))
    project = open_project(root / "cpb.yaml", runner=ProcessRunner())
    bare, ntasks, nfiles = bare_doit_project(project, bench.work / f"bare{images}")
    spec = str(root / "cpb.yaml")
    full = {**os.environ, "CPB_NO_FAST_PATH": "1"}
    settle(root)
    t = rounds({
        "doit": lambda: timed([PY, "-m", "doit"], bare),
        "plan": lambda: timed(cpb("-f", spec, "plan"), root),
        "build": lambda: timed(cpb("-f", spec, "build"), root),
        "plan_full": lambda: timed(cpb("-f", spec, "plan"), root, env=full),
        "build_full": lambda: timed(cpb("-f", spec, "build"), root, env=full),
        "listing": lambda: timed(["buildah", "images", "--json", "--no-trunc"], root),
        # the floor of the full path: starting Python and importing what a full
        # plan imports, doing nothing with it; and the graph library doit is given
        "imports": lambda: timed([PY, "-c", FULL_PATH_IMPORTS], root),
        "networkx": lambda: timed([PY, "-c", "import networkx"], root),
        "podman": lambda: retried(lambda: timed(["podman", "images", "--format", "json"], root)),
    }, bench.repeats)
    m = {k: statistics.median(v) for k, v in t.items()}
    bench.add("noop", f"bare doit, {ntasks} tasks, {nfiles} file_dep", fmt_s(m["doit"]))
    bench.add("noop", "one listing of local storage: `buildah images --json` (what cpb runs)",
              fmt_s(m["listing"]))
    bench.add("noop", "the same with `podman images --format json` (not used)",
              fmt_s(m["podman"]))
    for what, label in (("plan", "cpb plan"), ("build", "no-op cpb build")):
        bench.add("noop", f"{label}, {images} images, unchanged since the last run",
                  fmt_s(m[what]), f"< {NOOP_LIMIT_S} s", m[what] < NOOP_LIMIT_S)
        ratio = paired_ratio(t, what, "doit")
        bench.add("noop", f"{label} / bare doit", f"{ratio:.2f}x", f"<= {NOOP_RATIO}x",
                  ratio <= NOOP_RATIO)
    for what, label in (("plan_full", "cpb plan"), ("build_full", "no-op cpb build")):
        bench.add("noop", f"{label}, full path (CPB_NO_FAST_PATH=1: first run after a change)",
                  fmt_s(m[what]))
        ratio = paired_ratio(t, what, "doit")
        if what == "plan_full":
            # issue 11: the full path of `cpb plan` (load, graph, digests, checks,
            # reasons) within 2x of doit deciding the same graph from its file_dep
            bench.add("noop", f"{label}, full path / bare doit", f"{ratio:.2f}x",
                      f"<= {NOOP_RATIO}x", ratio <= NOOP_RATIO)
        else:  # reported: a no-op build is the fast path unless something changed
            bench.add("noop", f"{label}, full path / bare doit", f"{ratio:.2f}x")
    bench.add("noop", "start-up of the full path alone: Python + the modules a full plan "
              "imports, no work", f"{fmt_s(m['imports'])} = "
              f"{paired_ratio(t, 'imports', 'doit'):.2f}x bare doit")
    bench.add("noop", "`python -c 'import networkx'` (the graph a run gives doit; a plan "
              "does not import it)",
              f"{fmt_s(m['networkx'])} = {paired_ratio(t, 'networkx', 'doit'):.2f}x bare doit")
    plan_big, build_big = count_noop(root)
    fast_big = count_fast(root)
    small_root, _ = synthetic_project(bench, small, f"noop{small}")
    setup_built(small_root)
    settle(small_root)
    plan_small, build_small = count_noop(small_root)
    fast_small = count_fast(small_root)
    for what, big, little in (("plan (fast path)", fast_big, fast_small),
                              ("plan (full path)", plan_big, plan_small),
                              ("build (full path)", build_big, build_small)):
        constant = external(big) == external(little) and external(big) <= 2
        bench.add("noop", f"processes of a no-op {what}: {images} vs {small} images",
                  f"{big} vs {little}", "same, <= 2", constant)
    if profile:
        profile_noop(root)
    return root


def settle(root: Path) -> None:
    """Let a no-op run write .cpb/noop.json, as a user's second run would.

    A record is written only when every input is older than the run by
    state.RACY_MARGIN_NS: wait that long after what the last build wrote.
    """
    spec = str(root / "cpb.yaml")
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.5)
    timed(cpb("-f", spec, "plan"), root)
    if not (root / ".cpb" / RECORD).is_file():
        raise RuntimeError(f"no-op `cpb plan` in {root} wrote no {RECORD}")


def setup_built(root: Path) -> None:
    """Every image of the project in local storage as a build would leave it.

    One `podman load` (synthetic.preload_images) instead of hundreds of stub
    builds, then one real `cpb build`: it renders every descriptor, finds
    every image built, and records them. Not measured.
    """
    project = open_project(root / "cpb.yaml", runner=ProcessRunner())
    preload_images(project, root / "preload.tar")
    timed(cpb("-f", str(root / "cpb.yaml"), "build"), root)


def profile_noop(root: Path) -> None:
    prof = cProfile.Profile()
    prof.enable()
    quiet_doit(open_project(root / "cpb.yaml", runner=ProcessRunner()))
    prof.disable()
    stats = pstats.Stats(prof, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(25)


def case_scaling(bench: Bench, sizes: Sequence[int]) -> None:
    """`cpb plan` of a project never built: load, graph, digests, checks, reasons."""
    results: dict[int, float] = {}
    for size in sizes:
        root, _ = synthetic_project(bench, size, f"scale{size}")
        spec = str(root / "cpb.yaml")
        results[size] = medians({"plan": lambda spec=spec, root=root: timed(  # type: ignore[misc]
            cpb("-f", spec, "plan"), root)}, bench.repeats)["plan"]
        bench.add("scaling", f"cpb plan, {size} images (nothing built)", fmt_s(results[size]))
    ordered_sizes = sorted(results)
    if len(ordered_sizes) >= 3:
        a, b, c = ordered_sizes[0], ordered_sizes[len(ordered_sizes) // 2], ordered_sizes[-1]
        low = (results[b] - results[a]) / (b - a) * 1000
        high = (results[c] - results[b]) / (c - b) * 1000
        bench.add("scaling", f"ms per image, {a}->{b} vs {b}->{c}",
                  f"{low:.2f} vs {high:.2f}", "<= 2x (roughly linear)", high <= 2 * max(low, 0.01))


def case_incremental(bench: Bench, root: Path) -> None:
    project = open_project(root / "cpb.yaml", runner=ProcessRunner())
    images = project.spec.images
    children = nx.DiGraph((i.parent, n) for n, i in images.items() if i.parent)
    leaves = sorted(n for n in images if n in children and children.out_degree(n) == 0)
    leaf = leaves[len(leaves) // 2]
    data = module_files(root, leaf)[2]
    data.write_text(data.read_text() + "changed\n")
    start = time.perf_counter()
    stub = stub_build(root)
    took = time.perf_counter() - start
    bench.add("incremental", f"leaf {leaf}'s module file changed: cekit builds",
              f"{stub.started['cekit']} ({sorted(built(stub))[:3]}, {fmt_s(took)})",
              "exactly 1, that leaf", built(stub) == [leaf])
    base = "base01"
    expected = {base, *nx.descendants(children, base)}
    data = module_files(root, base)[2]
    data.write_text(data.read_text() + "changed\n")
    start = time.perf_counter()
    stub = stub_build(root)
    took = time.perf_counter() - start
    bench.add("incremental", f"{base}'s module file changed: cekit builds",
              f"{stub.started['cekit']} ({fmt_s(took)})",
              f"exactly {base} + its {len(expected) - 1} descendants",
              set(built(stub)) == expected and len(built(stub)) == len(expected))


# -- cases on a small real project: cekit + podman on busybox ---------------------

def example_files(name: str, children: Sequence[str], parents: dict[str, str]) -> dict[str, str]:
    lines = [f"project: {name}", "images:", "  base:", "    rootfs: {tar: busybox.tar}",
             '    version: "1"']
    files: dict[str, str] = {}
    for child in children:
        lines += [f"  {child}:", f"    from: {parents.get(child, 'base')}",
                  f"    modules: [m-{child}]"]
        files[f"modules/m-{child}/module.yaml"] = (
            f"schema_version: 1\nname: m-{child}\nversion: '1.0'\n"
            "execute:\n  - script: install.sh\n")
        files[f"modules/m-{child}/install.sh"] = (
            f"#!/bin/sh\nset -e\necho {child} > /etc/{child}\n")
    files["cpb.yaml"] = "\n".join(lines) + "\n"
    return files


# base <- mid <- leaf1, leaf2; base <- other (the integration tests' project)
EXAMPLE_CHILDREN = ("mid", "leaf1", "leaf2", "other")
EXAMPLE_PARENTS = {"leaf1": "mid", "leaf2": "mid"}


def example_project(bench: Bench, label: str, children: Sequence[str] = EXAMPLE_CHILDREN,
                    parents: dict[str, str] | None = None) -> Path:
    name = bench.project_name(label)
    root = bench.work / name
    build_file_tree(root, example_files(name, children,
                                        EXAMPLE_PARENTS if parents is None else parents))
    shutil.copy(bench.work / "busybox.tar", root / "busybox.tar")
    return root


def by_hand_commands(root: Path) -> list[list[str]]:
    """What cpb runs for a cold build, as a person would type it, in order.

    The descriptors are rendered beforehand (a person has them written).
    """
    from cpb.adapters.cekit import build_command

    project = open_project(root / "cpb.yaml", runner=ProcessRunner())
    commands: list[list[str]] = []
    for image in ordered_images(project):
        do_render(project, image)
        build = project.images[image]
        if build.rootfs_ref:
            commands.append(["podman", "import", "--quiet", str(root / "busybox.tar"),
                             build.rootfs_ref])
        commands.append(build_command(project.state.render_path(image),
                                      project.state.build_dir(image), [build.digest_ref]))
        commands.append(["podman", "tag", build.digest_ref, build.version_ref])
    return commands


def ordered_images(project: Project) -> list[str]:
    return [split_task(t)[1] for t in ordered(project.graph) if t.startswith("build:")]


def run_sequence(commands: list[list[str]], cwd: Path) -> float:
    return sum(timed(c, cwd) for c in commands)


def case_cold(bench: Bench) -> None:
    cpb_times, hand_times = [], []
    for _ in range(bench.repeats):
        root = example_project(bench, "cold-cpb")
        cpb_times.append(timed(cpb("-f", str(root / "cpb.yaml"), "build"), root))
        hand = example_project(bench, "cold-hand")
        commands = by_hand_commands(hand)
        start = time.perf_counter()
        run_sequence(commands, hand)
        hand_times.append(time.perf_counter() - start)
    c, h = statistics.median(cpb_times), statistics.median(hand_times)
    bench.add("cold", "cold cpb build, 5 images (real cekit)", fmt_s(c))
    bench.add("cold", "the same commands by hand, in sequence", fmt_s(h))
    overhead = c / h - 1
    bench.add("cold", "cpb's overhead", f"{overhead * 100:+.1f} %",
              f"< {COLD_OVERHEAD * 100:.0f} %", overhead < COLD_OVERHEAD)


def case_today(bench: Bench) -> None:
    root = example_project(bench, "today")
    spec = str(root / "cpb.yaml")
    timed(cpb("-f", spec, "build"), root)
    settle(root)
    project = open_project(root / "cpb.yaml", runner=ProcessRunner())
    from cpb.adapters.cekit import build_command

    rebuilds = [build_command(project.state.render_path(i), project.state.build_dir(i),
                              [project.images[i].digest_ref]) for i in ordered_images(project)]
    m = medians({
        "noop": lambda: timed(cpb("-f", spec, "build"), root),
        "cekit": lambda: run_sequence(rebuilds, root),
    }, bench.repeats)
    bench.add("today", "no-op cpb build, 5 images (unchanged since the last run)",
              fmt_s(m["noop"]))
    bench.add("today", "`cekit build podman` for each image (warm cache)", fmt_s(m["cekit"]))
    bench.add("today", "no-op cpb / cekit every time", f"{m['noop'] / m['cekit']:.3f}x")


def case_parallel(bench: Bench) -> None:
    children = ("p1", "p2", "p3", "p4")
    root = example_project(bench, "parallel", children, {})
    spec = str(root / "cpb.yaml")
    timed(cpb("-f", spec, "build", "base"), root)
    counter = [0]

    def rebuild(jobs: int) -> float:
        counter[0] += 1
        for child in children:  # a new input for each: all four rebuild, the base does not
            script = root / "modules" / f"m-{child}" / "install.sh"
            script.write_text(script.read_text() + f"echo run {counter[0]} >> /etc/{child}\n")
        return timed(cpb("-f", spec, "build", "-j", str(jobs)), root)

    m = medians({"j1": lambda: rebuild(1), "j2": lambda: rebuild(2)}, bench.repeats)
    bench.add("parallel", "4 independent images, -j 1", fmt_s(m["j1"]))
    bench.add("parallel", "4 independent images, -j 2", fmt_s(m["j2"]))
    bench.add("parallel", "-j 2 / -j 1", f"{m['j2'] / m['j1']:.2f}x")


# -- main -------------------------------------------------------------------------

def attempt(bench: Bench, case: str, run: Callable[[], object]) -> object:
    """Run one case; a case that breaks is a MISSED row, and the others still run."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - reported in the table and in full on stderr
        import traceback

        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        bench.add(case, "the case failed", f"{type(exc).__name__}: {first[:160]}",
                  "runs to the end", False)
        return None


def table(rows: list[Row]) -> str:
    header = ["case", "measure", "median / value", "target", ""]
    cells = [header, *[r.cells() for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(header))) + " |"
             for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    podman = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
    images = subprocess.run(["podman", "images", "-q"], capture_output=True, text=True).stdout
    return (f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, {podman}, {len(images.split())} images in "
            "local storage before the run")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(ALL_CASES),
                        help=f"comma-separated, from {','.join(ALL_CASES)}")
    parser.add_argument("--images", type=int, default=500, help="no-op/incremental size")
    parser.add_argument("--small", type=int, default=50,
                        help="the second no-op size, to show process counts are constant")
    parser.add_argument("--sizes", default="100,500,2000", help="scaling sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-repeats", type=int, default=2,
                        help="repeats of the cases with real cekit builds (today, cold, parallel)")
    parser.add_argument("--profile", action="store_true", help="cProfile a no-op build")
    parser.add_argument("--keep", action="store_true",
                        help="keep the projects and their images (default: remove)")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="cpb-bench-"))
    bench = Bench(repeats=args.repeats, work=work, quiet=True)
    busybox_rootfs_tar(work / "busybox.tar")
    # cpb's bytecode, as an install has it (pip compiles it; doit's is in
    # site-packages): with PYTHONDONTWRITEBYTECODE set, as on some machines,
    # every timed `cpb` would otherwise compile its own source again.
    compileall.compile_dir(str(REPO / "src"), quiet=1)
    about = machine()
    start = time.perf_counter()
    try:
        noop_root = None
        if "noop" in cases or "incremental" in cases:
            noop_root = attempt(bench, "noop", lambda: case_noop(bench, args.images, args.small,
                                                                  args.profile))
        if "incremental" in cases and noop_root is not None:
            attempt(bench, "incremental", lambda: case_incremental(bench, noop_root))
        if not args.keep:
            # The real cekit cases below must not run in a store crowded with
            # the synthetic images: podman gets slower with every image it holds.
            bench.remove_images()
        if "scaling" in cases:
            attempt(bench, "scaling",
                    lambda: case_scaling(bench, [int(s) for s in args.sizes.split(",")]))
        bench.repeats = args.real_repeats
        for name, case in (("today", case_today), ("cold", case_cold),
                           ("parallel", case_parallel)):
            if name in cases:
                attempt(bench, name, lambda case=case: case(bench))  # type: ignore[misc]
    finally:
        if not args.keep:
            bench.remove_images()
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - start
    print(f"Machine: {about}\nRepeats: {args.repeats}, real cekit cases {args.real_repeats} "
          f"(medians); total time {total:.0f} s\n")
    print(table(bench.rows))
    missed = [r for r in bench.rows if r.ok is False]
    if missed:
        print(f"\n{len(missed)} target(s) missed")
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
