"""Seeing the work (issue 15), the parts that are pure logic or need no podman:
the plain progress display, the run record, `cpb logs` of an image, shell
completion, `cpb artifact add --write` and the graph's formats."""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cpb.cli.app import main
from cpb.cli.display import PlainDisplay, elapsed, last_log_line, printable
from cpb.cli.graphview import Node, TaskGraph, format_for, to_dot, to_mermaid
from cpb.cli.logs import follow
from cpb.errors import SpecError
from cpb.spec.model import load_spec
from cpb.state import StateDir
from cpb.tasks.runlog import RunRecorder, read_runs
from helpers import build_file_tree

REPO = Path(__file__).resolve().parents[1]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but \n


# -- the plain display ------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plain_run(tmp_path: Path) -> str:
    """A scripted run through the plain display: two tasks, ticks, a failure."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    # a tool's output with colours, a carriage-return progress bar and a tab
    (logs / "build-a.log").write_bytes(b"STEP 1/3: FROM base\n\x1b[32mGet:1\x1b[0m http://deb\r"
                                       b"Get:2\tprogress 50%\r\n")
    (logs / "build-b.log").write_bytes(b"")
    clock, out = Clock(), io.StringIO()
    display = PlainDisplay(out, lambda task: logs / (task.replace(":", "-") + ".log"),
                           total=3, ticker=False, clock=clock)
    display.started("build:a")
    display.started("build:b")
    clock.now += 29
    display.tick()  # not yet 30 s: nothing
    clock.now += 2
    display.tick()  # 31 s: one line each
    display.tick()  # nothing new
    display.line("  ok  build:b (31.0 s)")
    display.finished("build:b", False)
    clock.now += 30
    display.tick()  # 61 s: build:a again
    display.line("  FAIL build:a: cekit exited with 1\n  last lines:\n    \x1b[31mE: boom\x1b[0m")
    display.finished("build:a", True)
    clock.now += 100
    display.tick()  # nothing running: nothing
    display.line("1 done, 0 up to date, 1 failed: build:a; logs: cpb logs a")
    display.close()
    return out.getvalue()


EXPECTED_PLAIN = """\
  ... build:a
  ... build:b
  ... build:a still running (31s): Get:2 progress 50%
  ... build:b still running (31s)
  ok  build:b (31.0 s)
  ... build:a still running (1m01s): Get:2 progress 50%
  FAIL build:a: cekit exited with 1
  last lines:
    E: boom
1 done, 0 up to date, 1 failed: build:a; logs: cpb logs a
"""


def test_plain_display_is_byte_stable_and_has_no_control_characters(tmp_path: Path) -> None:
    first = _plain_run(tmp_path)
    assert first == EXPECTED_PLAIN
    assert _plain_run(tmp_path) == first
    assert not CONTROL.search(first) and "\x1b" not in first


def test_plain_display_says_still_running_on_its_own(tmp_path: Path) -> None:
    log = tmp_path / "build-x.log"
    out = io.StringIO()
    display = PlainDisplay(out, lambda task: log, every=0.3)
    display.started("build:x")
    log.write_text("STEP 2/5: RUN apt-get install gcc\n")
    deadline = time.monotonic() + 10
    while "still running" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    display.close()
    assert "  ... build:x still running (0s): STEP 2/5: RUN apt-get install gcc\n" \
        in out.getvalue()


def test_last_log_line_and_helpers(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert last_log_line(log) == "" and last_log_line(None) == ""
    log.write_bytes(b"one\n\x1b]0;title\x07two \x1b[1mbold\x1b[0m\n\n")
    assert last_log_line(log) == "two bold"
    assert last_log_line(log, since=time.time() + 60) == ""  # an older run's log
    assert printable("a\x00b\x1b[2Kc\td") == "abc d"
    assert [elapsed(s) for s in (0, 59.9, 61, 3725)] == ["0s", "59s", "1m01s", "1h02m"]


# -- the run record and `cpb logs` -------------------------------------------------

def test_run_record_keeps_each_tasks_last_run(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    first = RunRecorder(state, "cpb build", started=100.0)
    first.finished("build:a", "failed", 3.0, "cekit exited with 1\n  last lines: ...")
    first.finished("build:b", "ok", 2.0)
    RunRecorder(state, "cpb build -j 2", started=200.0).finished("build:a", "ok", 1.0)
    runs = read_runs(state)
    assert (runs["build:a"].result, runs["build:a"].command) == ("ok", "cpb build -j 2")
    assert (runs["build:b"].result, runs["build:b"].run_started) == ("ok", 100.0)
    (state.root / "logs" / "runs.json").write_text("{not json")
    assert read_runs(state) == {}


SPEC = """
    # my farm
    project: views-unit
    images:
      base: {rootfs: {tar: base.tar}}   # the base
      leaf:
        from: base
        packages: ["gcc"]

      # the other one
      other: {from: base}
    """


def test_logs_shows_an_images_last_log_and_its_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    root = build_file_tree(tmp_path, {"cpb.yaml": SPEC, "base.tar": "x"})
    state = StateDir(root)
    log = state.log_path("build:leaf")
    log.parent.mkdir(parents=True)
    log.write_text("$ cekit build\nE: Unable to locate package gcc\n")
    RunRecorder(state, "cpb build -j 2", started=time.time() - 5).finished(
        "build:leaf", "failed", 4.0, "cekit exited with 1")
    assert main(["-f", str(root / "cpb.yaml"), "logs", "leaf"]) == 0
    out, err = capsys.readouterr()
    assert out == "$ cekit build\nE: Unable to locate package gcc\n"
    assert "build:leaf failed in the run of `cpb build -j 2` started" in err
    assert main(["-f", str(root / "cpb.yaml"), "logs", "other"]) == 1
    assert "no log of rootfs:other or build:other or push:other" in capsys.readouterr().err
    assert main(["-f", str(root / "cpb.yaml"), "logs", "leef"]) == 2
    assert "did you mean 'leaf'" in capsys.readouterr().err


def test_follow_shows_appended_text_and_a_restarted_log(tmp_path: Path) -> None:
    log = tmp_path / "build-a.log"
    log.write_bytes(b"one\n")
    out, notes = io.BytesIO(), []

    def writer() -> None:
        time.sleep(0.7)
        with log.open("ab") as handle:
            handle.write(b"two\n")
        time.sleep(0.7)
        log.write_bytes(b"new\n")  # the task ran again

    thread = threading.Thread(target=writer)
    thread.start()
    follow(log, out, 4, notes.append, stop=lambda: out.getvalue().endswith(b"new\n"))
    thread.join()
    assert out.getvalue() == b"two\nnew\n"
    assert notes == ["build-a.log: the task started again; its new log follows"]


# -- shell completion -----------------------------------------------------------------

def _cpb(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **env}
    return subprocess.run([sys.executable, "-m", "cpb", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _cpb_completion cpb"),
    ("zsh", "compdef _cpb_completion cpb"),
    ("fish", "complete --no-files --command cpb"),
])
def test_completion_scripts_for_three_shells(tmp_path: Path, shell: str, marker: str) -> None:
    result = _cpb(["completion", shell], tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and "_CPB_COMPLETE" in result.stdout


def test_completion_of_image_pod_and_option_names(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, {"cpb.yaml": SPEC + """
    pods:
      farm: {containers: [{image: leaf}]}
    """, "base.tar": "x"})

    def complete(words: str, shell: str = "bash") -> str:
        result = _cpb([], root, _CPB_COMPLETE=f"{shell}_complete", COMP_WORDS=words,
                      COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert complete("cpb build l").split() == ["plain,leaf"]
    assert complete("cpb graph ").split() == ["plain,base", "plain,leaf", "plain,other",
                                               "plain,pod:farm"]
    assert complete("cpb up ").split() == ["plain,farm"]
    assert complete("cpb artifact add x --image o").split() == ["plain,other"]
    assert "plain,--progress" in complete("cpb build --pro").split()
    assert "plain,completion" in complete("cpb comp").split()
    assert complete("cpb logs l", "zsh").split("\n")[:2] == ["plain", "leaf"]
    # a spec that cannot be read completes nothing, and says nothing
    (root / "cpb.yaml").write_text("images: [\n")
    assert complete("cpb build l").strip() == ""


# -- artifact add --write --------------------------------------------------------------

COMMENTED = """\
# Our farm. Keep this comment.
project: views-write   # trailing comment
defaults:
    packages_manager: 'apt-get'    # quoted, 4-space indent
images:
    base:
        rootfs: {tar: base.tar}   # flow style kept
    leaf:
        from: base
        artifacts:
            -   path: local.txt   # a local file
                dest: /opt
        env: {A: "1"}

    # the other image
    other:
        from: base
        labels: {x: y}
"""


def _add(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _cpb(["--cache-dir", str(root / "cache"), "artifact", "add", *args], root)


def _inserted(before: str, after: str) -> list[str]:
    """The lines `after` adds to `before`; fails if any line of `before` changed."""
    added = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(
            a=before.splitlines(), b=after.splitlines(), autojunk=False).get_opcodes():
        assert op in ("equal", "insert"), (op, before.splitlines()[a1:a2])
        if op == "insert":
            added += after.splitlines()[b1:b2]
    return added


def test_artifact_add_write_keeps_comments_and_formatting(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, {"cpb.yaml": COMMENTED, "base.tar": "x",
                                      "local.txt": "l", "files/tool.tgz": "tool bytes"})
    url = (root / "files/tool.tgz").as_uri()
    spec = root / "cpb.yaml"

    result = _add(root, url, "--write", "--image", "leaf")
    assert result.returncode == 0, result.stderr
    first = spec.read_text()
    added = _inserted(COMMENTED, first)
    sha = json.loads(json.dumps(result.stdout.split("sha256: ")[1].split()[0]))
    assert added == [f'            -   url: "{url}"', f"                sha256: {sha}"]
    assert "images.leaf.artifacts" in result.stderr

    result = _add(root, url, "--write", "--image", "other", "--name", "other.tgz")
    assert result.returncode == 0, result.stderr
    second = spec.read_text()
    assert [a.strip() for a in _inserted(first, second)] == [
        "artifacts:", f'- url: "{url}"', f"sha256: {sha}", 'name: "other.tgz"']
    assert second.index('name: "other.tgz"') > second.index("labels: {x: y}")

    loaded = load_spec(spec)  # still a valid spec, with the entries where they belong
    assert [a.name for a in loaded.images["leaf"].artifacts] == ["local.txt", "tool.tgz"]
    assert [a.name for a in loaded.images["other"].artifacts] == ["other.tgz"]

    # the same name again is refused, and the file is left as it was
    result = _add(root, url, "--write", "--image", "leaf")
    assert result.returncode == 2
    assert "image leaf already has an artifact named 'tool.tgz'" in result.stderr
    assert spec.read_text() == second


def test_artifact_add_write_under_defaults(tmp_path: Path) -> None:
    text = "# top\nproject: views-d\nimages:\n  base: {rootfs: {tar: base.tar}}\n"
    root = build_file_tree(tmp_path, {"cpb.yaml": text, "base.tar": "x", "t.whl": "w"})
    result = _add(root, (root / "t.whl").as_uri(), "--write")
    assert result.returncode == 0, result.stderr
    after = (root / "cpb.yaml").read_text()
    assert [a.strip().split(":")[0] for a in _inserted(text, after)] == [
        "defaults", "artifacts", "- url", "sha256"]
    assert [a.name for a in load_spec(root / "cpb.yaml").images["base"].artifacts] == ["t.whl"]
    result = _add(root, (root / "t.whl").as_uri(), "--write", "--image", "nope")
    assert result.returncode == 2 and "no image 'nope'" in result.stderr
    assert _add(root, (root / "t.whl").as_uri(), "--image", "base").returncode == 2


# -- the graph's formats --------------------------------------------------------------

def test_graph_formats() -> None:
    view = TaskGraph([Node("render:a", "uptodate"), Node("build:a", "failed", ["boom \"x\""]),
                      Node("tag:a", "pull", ["in registry"])],
                     [("build:a", "tag:a"), ("render:a", "build:a")])
    dot = to_dot(view, "p: graph")
    assert '"build:a" -> "tag:a";' in dot and '"render:a" -> "build:a";' in dot
    assert 'tooltip="build:a: failed last run\\nboom \\"x\\""' in dot
    mermaid = to_mermaid(view)
    assert 't1["build:a"]:::failed' in mermaid and "t1 --> t2" in mermaid
    assert format_for(Path("g.svg"), None) == "svg" and format_for(None, None) == "dot"
    assert format_for(Path("g.png"), "dot") == "dot"
    assert format_for(Path("g.mmd"), None) == "mermaid"
    with pytest.raises(SpecError, match="cannot tell the format"):
        format_for(Path("g.txt"), None)


def test_graph_without_graphviz_is_one_line_naming_the_package(tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = build_file_tree(tmp_path, {"cpb.yaml": SPEC, "base.tar": "x"})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["-f", str(root / "cpb.yaml"), "graph", "-o", str(tmp_path / "g.png")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Debian package graphviz" in err
    assert not (tmp_path / "g.png").exists()


# -- the live display on a pseudo-terminal ------------------------------------------

def test_live_display_on_a_pty_shows_running_tasks_and_keeps_warnings_above(
        tmp_path: Path) -> None:
    import logging
    import pty

    from cpb.cli.display import LiveDisplay

    master, slave = pty.openpty()
    out = os.fdopen(slave, "w", encoding="utf-8")
    log = tmp_path / "build-a.log"
    handler = logging.StreamHandler(out)
    root_logger = logging.getLogger()
    root_logger.addHandler(handler)
    seen = b""

    def read_for(seconds: float) -> None:
        nonlocal seen
        import select
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    return

    try:
        display = LiveDisplay(out, lambda task: log, total=2)
        assert handler.stream is not out  # warnings go through the display meanwhile
        display.started("build:a")
        log.write_text("STEP 3/9: RUN apt-get install -y gcc\n")
        read_for(1.0)
        logging.getLogger("cpb.test").warning("podman storage changed under the build")
        display.line("  ok  render:b (0.1 s)")
        display.finished("render:b", False)
        read_for(0.6)
        display.close()
        assert handler.stream is out  # the logging stream is given back
    finally:
        root_logger.removeHandler(handler)
        out.close()
        read_for(0.2)
        os.close(master)
    text = re.sub(rb"\x1b\[[0-9;?]*[ -/]*[@-~]", b"", seen).decode()
    assert re.search(r"build:a\s+\d+s\s+STEP 3/9: RUN apt-get install -y gcc", text), text
    assert "0/2 tasks, 1 running, 0 failed" in text
    assert "1/2 tasks, 1 running, 0 failed" in text
    assert "podman storage changed under the build" in text
    assert "  ok  render:b (0.1 s)" in text
