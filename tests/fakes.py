"""The one fake `Runner` of the test suite, scripted by argv patterns.

For unit tests of pure logic (what cpb decides from what podman answers),
never as the proof that a feature works: that takes the real programs
(tests marked `integration`).

    runner = FakeRunner()
    runner.on("podman", "images", fails=(125, "image not known"), times=2)
    runner.on("podman", "images", returns="[]")
    runner.on("cekit", does=lambda argv: ...)          # a side effect; its output

A pattern is the first words of a command line, each an `fnmatch` pattern
(`"*"` is any one word): `on("podman", "image", "inspect", "*missing*")`.
The first rule that matches and has uses left answers, so a rule with
`times=` steps aside once used up. A command no rule matches is a test
error (`AssertionError`), or, given `passthrough=`, runs on that real
runner: a benchmark stubbing cekit alone, an integration test recording
what cpb ran. Every command is recorded in `calls` and counted in
`started` (by program name), as `ProcessRunner` counts.

`podman_fake()` is a FakeRunner scripted to answer from `FakeStorage`: a
list of local images (`podman images`, `buildah images`, `podman image
inspect`) and of pods (`podman pod ps`) that a test changes as it goes.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpb.adapters.runner import CommandFailed, Runner

Action = Callable[[list[str]], "str | None"]


@dataclass
class _Rule:
    pattern: tuple[str, ...]
    returns: str
    fails: tuple[int, str] | None
    raises: BaseException | None
    does: Action | None
    times: int | None  # uses left; None: any number

    def matches(self, argv: Sequence[str]) -> bool:
        head = argv[:len(self.pattern)]
        return (self.times != 0 and len(head) == len(self.pattern)
                and all(fnmatch.fnmatchcase(w, p) for w, p in zip(head, self.pattern, strict=True)))


class FakeRunner:
    """A `cpb.adapters.runner.Runner` answering from a script; records every call."""

    def __init__(self, *, passthrough: Runner | None = None) -> None:
        self.started: collections.Counter[str] = collections.Counter()
        self.calls: list[list[str]] = []
        self.rules: list[_Rule] = []
        self.passthrough = passthrough
        self.storage = FakeStorage()  # what podman_fake() answers from
        self._lock = threading.Lock()  # doit runs tasks in threads (-j)

    def on(self, *pattern: str, returns: str = "", fails: int | tuple[int, str] | None = None,
           raises: BaseException | None = None, does: Action | None = None,
           times: int | None = None) -> FakeRunner:
        """Answer commands starting with `pattern`: run `does(argv)` (its return value
        is the output, None for none), then raise `raises`, or fail with exit code
        `fails` (an int, or (code, output)), or return `returns`."""
        failure = (fails, "") if isinstance(fails, int) else fails
        self.rules.append(_Rule(tuple(pattern), returns, failure, raises, does, times))
        return self

    def ran(self, *pattern: str) -> list[list[str]]:
        """The recorded calls that start with `pattern` (fnmatch words)."""
        rule = _Rule(tuple(pattern), "", None, None, None, None)
        with self._lock:
            return [call for call in self.calls if rule.matches(call)]

    def run(self, args: Sequence[str], *, log_file: Path | None = None,
            timeout: float | None = None, stdin: bytes | None = None,
            cwd: Path | None = None, leaves_daemons: bool = False) -> str:
        argv = list(args)
        rule = self._take(argv)
        if rule is None:
            assert self.passthrough is not None
            return self.passthrough.run(argv, log_file=log_file, timeout=timeout, stdin=stdin,
                                        cwd=cwd, leaves_daemons=leaves_daemons)
        output = rule.does(argv) if rule.does is not None else None
        if rule.raises is not None:
            raise rule.raises
        if rule.fails is not None:
            code, text = rule.fails
            raise CommandFailed(argv, code, text, log_file)
        return rule.returns if output is None else output

    def run_attached(self, args: Sequence[str]) -> int:
        argv = list(args)
        rule = self._take(argv)
        if rule is None:
            assert self.passthrough is not None
            return self.passthrough.run_attached(argv)
        if rule.does is not None:
            rule.does(argv)
        if rule.raises is not None:
            raise rule.raises
        return rule.fails[0] if rule.fails is not None else 0

    def _take(self, argv: list[str]) -> _Rule | None:
        """Record `argv`; the rule that answers it (one use of it), or None: passthrough."""
        with self._lock:
            self.calls.append(argv)
            self.started[Path(argv[0]).name] += 1
            rule = next((r for r in self.rules if r.matches(argv)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        if rule is None and self.passthrough is None:
            raise AssertionError(f"a command no rule of this test's FakeRunner expects: {argv} "
                                 "(script it with .on(...); podman_fake() answers the "
                                 "listings of local storage)")
        return rule


@dataclass
class FakeStorage:
    """Local images and pods, as podman_fake() reports them."""

    images: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)

    def add_image(self, image_id: str, names: list[str], labels: dict[str, str]) -> None:
        self.images.append({"Id": image_id, "Names": names, "Labels": labels})

    def podman_images(self, argv: list[str]) -> str:
        return json.dumps(self.images)

    def buildah_images(self, argv: list[str]) -> str:
        # buildah lists names and ids, no labels (cpb.adapters.podman.ImageStore)
        return json.dumps([{"id": "sha256:" + i["Id"], "names": i["Names"]}
                           for i in self.images])

    def inspect(self, argv: list[str]) -> str:
        wanted = set(argv[3:])
        return json.dumps([i for i in self.images if i["Id"] in wanted])

    def pod_ps(self, argv: list[str]) -> str:
        return json.dumps(self.pods)


def podman_fake(images: list[dict[str, Any]] | None = None) -> FakeRunner:
    """A FakeRunner answering the listings of local storage and pods from its
    `storage`; any other command is a test error."""
    runner = FakeRunner()
    runner.storage.images = images or []
    store = runner.storage
    return (runner.on("podman", "images", does=store.podman_images)
            .on("buildah", "images", does=store.buildah_images)
            .on("podman", "image", "inspect", does=store.inspect)
            .on("podman", "pod", "ps", does=store.pod_ps))
