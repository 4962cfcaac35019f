"""Seeing the work with real builds (issue 15): the plain and live displays,
`cpb logs` of a failed build, and `cpb graph` against `cpb plan --all --json`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import module

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but \n
SVG = "{http://www.w3.org/2000/svg}"

SPEC = """
project: "@PROJECT@"
images:
  base: {rootfs: {tar: busybox.tar}}
  good: {from: base, modules: [m-good]}
  bad: {from: base, modules: [m-bad]}
  after-bad: {from: bad}
"""
FILES = {
    **module("m-good", "echo good > /etc/good"),
    **module("m-bad", "echo about-to-fail; exit 3"),
}


def cpb(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "cpb", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_failed_build_plain_output_logs_and_graph(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(SPEC, FILES)
    result = cpb(root, "build", "-j", "2")  # stdout is a pipe: plain lines
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert not CONTROL.search(out) and "\x1b" not in out, repr(out)
    assert "  ... build:bad\n" in out and "  ok  build:good (" in out
    assert "  FAIL build:bad: cekit exited with 1; log: " in out
    summary = out.strip().splitlines()[-1]
    assert re.match(r"\d+ done, 0 up to date, 1 failed: build:bad; 3 not run", summary)
    assert summary.endswith("; logs: cpb logs bad")

    # the command the summary names shows the log and the run it came from
    logs = cpb(root, "logs", "bad")
    assert logs.returncode == 0, logs.stderr
    assert "about-to-fail" in logs.stdout and "exit 3" in logs.stdout
    assert re.search(r"build-bad\.log: build:bad failed in the run of `cpb build -j 2` "
                     r"started \d{4}-\d\d-\d\d", logs.stderr), logs.stderr

    # the graph: every planned task a node, every edge there, coloured by state
    result = cpb(root, "graph", "-o", "graph.svg")
    assert result.returncode == 0, result.stderr
    plan = json.loads(cpb(root, "plan", "--all", "--json").stdout)
    svg = ET.parse(root / "graph.svg").getroot()
    nodes, edges = {}, set()
    for group in svg.iter(f"{SVG}g"):
        title = group.find(f"{SVG}title")
        if group.get("class") == "node" and not title.text.startswith("legend:"):
            shapes = [e for e in group.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon")
                      and e.get("fill") not in (None, "none")]
            link = group.find(f".//{SVG}a")
            tooltip = link.get("{http://www.w3.org/1999/xlink}title") if link is not None else ""
            nodes[title.text] = (shapes[0].get("fill"), tooltip)
        elif group.get("class") == "edge":
            edges.add(tuple(title.text.split("->")))
    assert set(nodes) == {t["task"] for t in plan["tasks"]}
    assert edges == {(need, t["task"]) for t in plan["tasks"] for need in t["needs"]}
    assert len(edges) >= 10  # rootfs, render, parent, tag edges
    colours = {task: fill for task, (fill, _) in nodes.items()}
    assert colours["build:good"] == "#c8e6c9"  # up to date
    assert colours["build:bad"] == "#ffcdd2"  # failed last run
    assert colours["build:after-bad"] == "#ffe08a"  # pending
    reasons = {t["task"]: t["reasons"] for t in plan["tasks"]}
    assert reasons["build:after-bad"][0] in nodes["build:after-bad"][1]

    # the same graph as mermaid and dot, on stdout
    mermaid = cpb(root, "graph", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR\n") and '["build:bad"]:::failed' in mermaid
    dot = cpb(root, "graph", "bad").stdout
    assert '"build:bad" -> "tag:bad";' in dot and "build:good" not in dot


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                          check=True).stdout


def test_live_display_on_a_terminal_shows_the_running_tasks_log_line(
        make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert shutil.which("tmux"), "tmux is installed by .ci/setup"
    # @PROJECT@ makes the script unique: podman's layer cache must not skip it
    slow = ('echo "@PROJECT@"; '
            'for i in 1 2 3 4 5 6 7 8 9 10; do echo "slow-step-$i"; sleep 1; done')
    root = make_project("""
project: "@PROJECT@"
images:
  base: {rootfs: {tar: busybox.tar}}
  slow: {from: base, modules: [m-slow]}
""", module("m-slow", slow))
    script = tmp_path / "run.sh"
    script.write_text(f"""#!/bin/sh
cd {root}
export PYTHONPATH={REPO / "src"} CONTAINERS_CONF={os.environ["CONTAINERS_CONF"]}
{sys.executable} -m cpb build
echo "EXIT=$?"
sleep 600
""")
    script.chmod(0o755)
    socket = f"cpb-test-{uuid.uuid4().hex[:8]}"  # our own tmux server
    _tmux(socket, "-f", "/dev/null", "new-session", "-d", "-x", "150", "-y", "40",
          str(script))
    try:
        screens, seen = [], None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            screen = _tmux(socket, "capture-pane", "-p")
            screens.append(screen)
            running = [line for line in screen.splitlines()
                       if "build:slow" in line and "slow-step-" in line]
            if running and seen is None:
                seen = running[0]
            if "EXIT=" in screen:
                break
            time.sleep(0.5)
        final = screens[-1]
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    assert "EXIT=0" in final, final
    # while it ran: the task, its elapsed time and its log's last line on one line,
    # and the total below
    assert seen is not None, "\n---\n".join(screens[-5:])
    assert re.search(r"build:slow\s+\d+s\s+slow-step-\d+", seen), seen
    assert any(re.search(r"\d+/\d+ tasks, 1 running, 0 failed", s) for s in screens)
    # at the end: the finished tasks' lines and the summary, the live area gone
    assert "  ok  build:slow (" in final and re.search(r"\d+ done, 0 up to date", final)
    assert "running," not in final
