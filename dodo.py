"""Development tasks for cpb itself (run `doit list`).

    doit test        the whole test suite (as CI runs it)
    doit unit        only the fast unit tests
    doit lint        ruff and mypy
    doit schema      regenerate src/cpb/cpb.schema.json from src/cpb/spec/schema.py
    doit bench       the benchmark (tests/benchmarks/bench.py, ~9 min; docs/benchmarks.md)
"""

from __future__ import annotations

import sys

DOIT_CONFIG = {"default_tasks": ["lint", "unit"], "verbosity": 2}
PY = sys.executable


def task_test() -> dict[str, object]:
    """Run every test, integration and slow ones included."""
    return {"actions": [[PY, "-m", "pytest"]], "uptodate": [False]}


def task_unit() -> dict[str, object]:
    """Run the unit tests only (seconds, no podman needed)."""
    return {"actions": [[PY, "-m", "pytest", "-q", "-m", "not integration"]],
            "uptodate": [False]}


def task_lint() -> dict[str, object]:
    """ruff and mypy over the package."""
    return {"actions": [[PY, "-m", "ruff", "check", "src", "tests"], [PY, "-m", "mypy"]],
            "uptodate": [False]}


def task_schema() -> dict[str, object]:
    """Write the shipped JSON Schema from the one in code."""

    def write() -> None:
        sys.path.insert(0, "src")
        from cpb.spec.schema import schema_json

        with open("src/cpb/cpb.schema.json", "w") as handle:
            handle.write(schema_json())

    return {"actions": [write], "file_dep": ["src/cpb/spec/schema.py"],
            "targets": ["src/cpb/cpb.schema.json"]}


def task_bench() -> dict[str, object]:
    """Run the benchmark; fails when a target is missed (see docs/benchmarks.md)."""
    return {"actions": [[PY, "tests/benchmarks/bench.py"]], "uptodate": [False]}
