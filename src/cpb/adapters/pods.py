"""Podman's pods: which pods of a project podman has, and removing one."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cpb.adapters.podman import PODMAN
from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import EnvironmentProblem

RUNNING = "Running"
# A container that restarted must stay up this long to count as stable again;
# podman (unlike a kubelet) restarts at once, so a crash loop restarts every
# second or so and is never up this long.
STABLE_AFTER = 60.0


@dataclass(frozen=True)
class ContainerHealth:
    """What `podman container inspect` says about one container, read for people."""

    state: str  # podman's: running, exited, stopped, created, ...
    restarts: int  # podman restarts under the pod's restart policy
    exit_code: int  # of the last run, when it is not running
    age: float  # seconds since the container was created (the pod played)
    up_for: float | None  # seconds since its last start, when running

    @property
    def crash_looping(self) -> bool:
        return self.restarts > 0 and (self.up_for is None or self.up_for < STABLE_AFTER)

    @property
    def stable(self) -> bool:
        return self.state == "running" and not self.crash_looping

    @property
    def failed(self) -> bool:
        """Crash-looping, or ended with an error: `cpb status` exits 1 for it."""
        return self.crash_looping or (self.state != "running" and self.exit_code != 0)

    def describe(self) -> str:
        restarts = f"{self.restarts} restart{'' if self.restarts == 1 else 's'}"
        if self.crash_looping:
            return f"restarting, {restarts} in {self.age:.0f} s"
        if self.state != "running" and self.exit_code:
            return f"{self.state} (exit code {self.exit_code})"
        if self.restarts:
            return f"{self.state} ({restarts}, stable for {self.up_for or 0:.0f} s)"
        return self.state


def container_health(inspected: dict[str, Any], now: datetime) -> ContainerHealth:
    """ContainerHealth from one entry of `podman container inspect`'s JSON."""
    state = inspected.get("State") or {}
    status = str(state.get("Status", ""))
    created = _time(inspected.get("Created"))
    started = _time(state.get("StartedAt"))
    running = status == "running"
    return ContainerHealth(
        state=status, restarts=int(inspected.get("RestartCount") or 0),
        exit_code=0 if running else int(state.get("ExitCode") or 0),
        age=max(0.0, (now - created).total_seconds()) if created else 0.0,
        up_for=max(0.0, (now - started).total_seconds()) if running and started else None)


def _time(text: Any) -> datetime | None:
    """podman's RFC 3339 times (nanoseconds, `Z`); None for a missing or zero time."""
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.year > 1 else None


@dataclass
class RunningPod:
    name: str
    id: str
    status: str
    labels: dict[str, str]
    containers: list[dict[str, Any]]  # podman's entries: Id, Names, Status


class PodStore:
    """The pods podman has with label `label_key=label_value`, asked for once per run."""

    def __init__(self, runner: Runner, label_key: str, label_value: str) -> None:
        self.runner = runner
        self.label = f"{label_key}={label_value}"
        self._pods: dict[str, RunningPod] | None = None
        self._lock = threading.Lock()

    def pods(self) -> dict[str, RunningPod]:
        with self._lock:
            if self._pods is None:
                self._pods = self._query()
            return self._pods

    def invalidate(self) -> None:
        with self._lock:
            self._pods = None

    def _query(self) -> dict[str, RunningPod]:
        args = [PODMAN, "pod", "ps", "--format", "json", "--filter", f"label={self.label}"]
        try:
            out = self.runner.run(args, timeout=120)
        except CommandFailed as exc:
            raise EnvironmentProblem(f"`podman pod ps` failed: {exc.tail(3)}") from None
        found: dict[str, RunningPod] = {}
        for entry in json.loads(out or "[]") or []:
            pod = RunningPod(name=entry.get("Name", ""), id=entry.get("Id", ""),
                             status=entry.get("Status", ""),
                             labels=entry.get("Labels") or {},
                             containers=entry.get("Containers") or [])
            found[pod.name] = pod
        return found

    def play(self, manifest: Path, log_file: Path) -> None:
        self.runner.run([PODMAN, "kube", "play", str(manifest)], log_file=log_file, timeout=600,
                        leaves_daemons=True)

    def remove(self, name: str, stop_timeout: int, log_file: Path | None = None) -> None:
        args = [PODMAN, "pod", "rm", "--force", "--ignore", "--time", str(stop_timeout), name]
        if log_file is None:
            self.runner.run(args, timeout=stop_timeout + 300)
        else:
            self.runner.run(args, log_file=log_file, timeout=stop_timeout + 300)

    def give_files(self, paths: list[Path], uid: int) -> None:
        """Make files the property of a container's user `uid`: that uid itself when
        podman runs as root, its mapped uid (`podman unshare`) when rootless."""
        if os.geteuid() == 0:
            for path in paths:
                os.chown(path, uid, -1)
            return
        try:
            self.runner.run([PODMAN, "unshare", "chown", str(uid), "--", *map(str, paths)],
                            timeout=60)
        except CommandFailed as exc:
            raise EnvironmentProblem(f"cannot give the TLS files to the container's uid "
                                     f"{uid}: {exc.tail(3)}") from None

    def remove_volumes(self, names: list[str]) -> None:
        if names:
            self.runner.run([PODMAN, "volume", "rm", "--force", *names], timeout=300)

    def containers(self, pod_names: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The containers of these pods (infra containers aside), by pod id."""
        found: dict[str, list[dict[str, Any]]] = {}
        if not pod_names:
            return found
        filters = [arg for name in pod_names for arg in ("--filter", f"pod={name}")]
        out = self.runner.run([PODMAN, "ps", "--all", "--format", "json", *filters],
                              timeout=120)
        for row in json.loads(out or "[]") or []:
            if not row.get("IsInfra"):  # PodName is only filled in with --pod
                found.setdefault(row.get("Pod", ""), []).append(row)
        return found

    def inspect(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """`podman container inspect` of these containers, by id (restart counts and
        start times are there, not in `podman ps`)."""
        if not ids:
            return {}
        out = self.runner.run([PODMAN, "container", "inspect", *ids], timeout=120)
        return {entry.get("Id", ""): entry for entry in json.loads(out or "[]") or []}

    def log_tail(self, container: str, lines: int) -> list[str]:
        """The last `lines` lines a container wrote, stdout and stderr in order."""
        with tempfile.TemporaryDirectory(prefix="cpb-logs-") as folder:
            merged = Path(folder) / "log"  # the runner's log file merges both streams
            self.runner.run([PODMAN, "logs", "--tail", str(lines), container],
                            log_file=merged, timeout=60)
            text = merged.read_text(errors="replace").splitlines()
        return text[1:]  # the first line is the runner's "$ command"
