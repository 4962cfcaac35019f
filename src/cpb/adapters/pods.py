"""Podman's pods: which pods of a project podman has, and removing one."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpb.adapters.podman import PODMAN
from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import EnvironmentProblem

RUNNING = "Running"


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
        self.runner.run([PODMAN, "kube", "play", str(manifest)], log_file=log_file, timeout=600)

    def remove(self, name: str, stop_timeout: int, log_file: Path | None = None) -> None:
        args = [PODMAN, "pod", "rm", "--force", "--ignore", "--time", str(stop_timeout), name]
        if log_file is None:
            self.runner.run(args, timeout=stop_timeout + 300)
        else:
            self.runner.run(args, log_file=log_file, timeout=stop_timeout + 300)

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
