"""How a `cpb` process ends (cpb.cli.process.exit_with): without tearing the
interpreter down object by object, but with nothing buffered lost and no
working thread cut short."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def env() -> dict[str, str]:
    """Output buffered, as it is unless PYTHONUNBUFFERED is set (as on some CI machines)."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
            "PYTHONPATH": str(SRC)}


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=env())


def test_buffered_output_and_log_records_reach_their_files(tmp_path: Path) -> None:
    code = """
import logging, logging.handlers, sys
from cpb.cli.process import exit_with
target = logging.FileHandler("log.txt")
# A MemoryHandler writes its records only when flushed or closed, as at exit.
logging.getLogger().addHandler(logging.handlers.MemoryHandler(10_000, target=target))
logging.getLogger().warning("the last record")
for n in range(20_000):
    print(f"line {n}")
exit_with(3)
"""
    proc = run(code, tmp_path)
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert len(lines) == 20_000 and lines[-1] == "line 19999"
    assert (tmp_path / "log.txt").read_text() == "the last record\n"


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    code = """
import threading, time
from pathlib import Path
from cpb.cli.process import exit_with
def work():
    time.sleep(0.5)
    Path("done").write_text("yes")
threading.Thread(target=work).start()
exit_with(0)
"""
    proc = run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "done").read_text() == "yes"


def test_a_reader_that_went_away_is_no_traceback(tmp_path: Path) -> None:
    code = """
from cpb.cli.process import exit_with
for n in range(100):
    print(f"line {n}")  # buffered: written when the process ends
exit_with(0)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `cpb plan | head` when head is gone: nobody reads
    with proc.stderr:
        assert proc.wait(timeout=60) == 0
        assert "Traceback" not in proc.stderr.read()
