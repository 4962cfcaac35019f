"""Safety properties checked on the source itself.

No spec value may reach a shell: external programs run only through
`cpb.adapters.runner.Runner`, with argument lists. Files that may hold secrets are
written with a mode chosen before any byte is written.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from cpb.state import write_bytes_atomic

SRC = Path(__file__).resolve().parents[1] / "src" / "cpb"
SOURCES = sorted(SRC.rglob("*.py"))
FORBIDDEN = {
    r"shell\s*=\s*True": "a shell would interpret spec values",
    r"\bos\.system\s*\(": "runs a shell",
    r"\bos\.popen\s*\(": "runs a shell",
    r"\bos\.exec\w*\s*\(": "bypasses the Runner",
    r"\bos\.spawn\w*\s*\(": "bypasses the Runner",
    r"\bcommands\.getoutput": "runs a shell",
    r"\byaml\.(load|load_all|unsafe_load|full_load)\s*\(": "not a SafeLoader",
    r"\byaml\.(Loader|UnsafeLoader|FullLoader)\b": "not a SafeLoader",
    r"\b(eval|exec)\s*\(": "runs text as code",
    r"\bpickle\.loads?\s*\(": "runs data as code",
}


def test_sources_are_found() -> None:
    assert len(SOURCES) > 10 and SRC / "adapters" / "runner.py" in SOURCES


@pytest.mark.parametrize("pattern", sorted(FORBIDDEN))
def test_no_shell_and_no_unsafe_loading(pattern: str) -> None:
    hits = [f"{path.relative_to(SRC.parent)}:{number}: {line.strip()}"
            for path in SOURCES
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert hits == [], f"{FORBIDDEN[pattern]}: {hits}"


def test_only_the_runner_starts_processes() -> None:
    users = sorted(path.name for path in SOURCES
                   if re.search(r"^\s*(import subprocess|from subprocess import)",
                                path.read_text(), re.MULTILINE))
    assert users == ["runner.py"]


def test_the_grep_would_catch_a_shell(tmp_path: Path) -> None:
    line = 'subprocess.run(f"podman build {name}", shell=True)'
    assert re.search(r"shell\s*=\s*True", line)
    assert re.search(r"\bos\.system\s*\(", "os.system('cekit build')")


def test_secret_files_are_private_from_the_first_byte(tmp_path: Path) -> None:
    # No secrets are written by the core yet (TLS keys, registry credentials
    # come with the registry and pods features); this is the helper they use.
    secret = tmp_path / "sub" / "key.pem"
    write_bytes_atomic(secret, b"-----BEGIN PRIVATE KEY-----\n", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    write_bytes_atomic(secret, b"rotated\n", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert list(secret.parent.iterdir()) == [secret]  # no temporary file left behind
