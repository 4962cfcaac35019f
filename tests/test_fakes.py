"""The test suite's one fake Runner keeps its script: what it answers, what it refuses."""

from __future__ import annotations

import sys

import pytest

from cpb.adapters.runner import CommandFailed, ProcessRunner, Runner
from fakes import FakeRunner, podman_fake


def test_rules_answer_in_order_and_step_aside_when_used_up() -> None:
    runner: Runner = FakeRunner().on("podman", "images", fails=(125, "busy"), times=1) \
        .on("podman", "images", returns="[]").on("podman", "image", "inspect", "*:1", returns="x")
    with pytest.raises(CommandFailed, match="podman exited with 125") as info:
        runner.run(["podman", "images", "--json"])
    assert info.value.output == "busy"
    assert runner.run(["podman", "images", "--json"]) == "[]"
    assert runner.run(["podman", "image", "inspect", "a:1"]) == "x"
    assert dict(runner.started) == {"podman": 3}


def test_a_command_no_rule_expects_is_a_test_error() -> None:
    runner = FakeRunner().on("podman", "images")
    with pytest.raises(AssertionError, match="no rule of this test's FakeRunner expects"):
        runner.run(["podman", "image", "inspect", "a:1"])  # "images" is not "image"
    with pytest.raises(AssertionError):
        runner.run(["podman"])  # shorter than every pattern
    assert runner.calls == [["podman", "image", "inspect", "a:1"], ["podman"]]


def test_side_effects_and_their_output() -> None:
    done: list[list[str]] = []

    def build(argv: list[str]) -> str:
        done.append(argv)
        return "built"

    runner = FakeRunner().on("cekit", does=build)
    assert runner.run(["cekit", "build"]) == "built"
    assert runner.run_attached(["cekit", "x"]) == 0
    assert done == [["cekit", "build"], ["cekit", "x"]] == runner.ran("cekit")


def test_passthrough_runs_the_rest_for_real() -> None:
    runner = FakeRunner(passthrough=ProcessRunner()).on("cekit", returns="stub")
    assert runner.run(["cekit"]) == "stub"
    assert runner.run([sys.executable, "-c", "print('real')"]) == "real\n"
    assert len(runner.calls) == 2


def test_podman_fake_answers_from_its_storage() -> None:
    runner = podman_fake()
    runner.storage.add_image("abc", ["localhost/p/a:1"], {"k": "v"})
    assert '"Id": "abc"' in runner.run(["podman", "images", "--format", "json"])
    assert runner.run(["buildah", "images", "--json"]).startswith('[{"id": "sha256:abc"')
    assert runner.run(["podman", "image", "inspect", "nope"]) == "[]"
    with pytest.raises(AssertionError):
        runner.run(["podman", "build", "."])
