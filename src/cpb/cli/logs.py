"""`cpb logs`: an image's last build log (and which run wrote it), or a pod's logs.

An image's logs are its tasks' files under `.cpb/logs/` (rootfs, build, push);
the newest one is shown, with the run that wrote it from `tasks/runlog.py`.
A pod's logs are its containers' (`podman pod logs`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cpb.errors import CpbError, SpecError
from cpb.naming import split_task
from cpb.project import Project
from cpb.tasks.runlog import read_runs
from cpb.util import did_you_mean

IMAGE_LOG_KINDS = ("rootfs", "build", "push")
POLL = 0.5  # seconds between looks at a followed log


class NoLog(CpbError):
    """Nothing to show: the task never ran in this project."""


@dataclass(frozen=True)
class LogFile:
    task: str
    path: Path
    about: str  # one line: which run wrote it and how it ended


def image_log(project: Project, name: str) -> LogFile:
    """The newest log of an image (NAME) or of one task (KIND:NAME)."""
    kind, _, image = name.rpartition(":")
    if kind and kind not in IMAGE_LOG_KINDS:
        raise SpecError(f"no logs for {kind}: tasks; give an image, "
                        f"{'|'.join(k + ':IMAGE' for k in IMAGE_LOG_KINDS)} or pod:NAME")
    if image not in project.images:
        raise SpecError(f"no image '{image}' in {project.spec.file.name}"
                        f"{did_you_mean(image, sorted(project.images))}")
    tasks = [f"{kind}:{image}"] if kind else [f"{k}:{image}" for k in IMAGE_LOG_KINDS]
    found = [(p.stat().st_mtime, t, p) for t in tasks
             if (p := project.state.log_path(t)).is_file()]
    if not found:
        raise NoLog(f"no log of {' or '.join(tasks)} in {project.state.root / 'logs'}: "
                    "it has not run in this project (or `cpb clean` removed it)")
    mtime, task, path = max(found)
    return LogFile(task, path, describe(project, task, mtime))


def describe(project: Project, task: str, mtime: float) -> str:
    run = read_runs(project.state).get(task)
    written = f"last written {_when(mtime)}"
    if run is None or not run.wrote(mtime):
        return f"{task}: {written} (by a run that did not finish it, or before runs were recorded)"
    ended = {"ok": "succeeded", "failed": "failed", "not run": "was not run"}.get(
        run.result, run.result)
    return (f"{task} {ended} in the run of `{run.command}` started "
            f"{_when(run.run_started)}; {written}")


def _when(stamp: float) -> str:
    ago = max(0, int(time.time() - stamp))
    ago_text = (f"{ago} s ago" if ago < 120 else f"{ago // 60} min ago" if ago < 7200
                else f"{ago // 3600} h ago")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + f" ({ago_text})"


def copy_log(path: Path, out: BinaryIO) -> int:
    """Write the whole log to `out`; the offset reached."""
    with path.open("rb") as handle:
        while chunk := handle.read(65536):
            out.write(chunk)
    out.flush()
    return path.stat().st_size


def follow(path: Path, out: BinaryIO, offset: int, note: Callable[[str], None],
           stop: Callable[[], bool] = lambda: False) -> None:
    """Write what is appended to the log, like `tail -f`, until `stop()` (or Ctrl-C).

    A task that runs again starts its log afresh: the file shrinks (or is
    replaced), and the new log is shown from its start.
    """
    inode = _inode(path)
    while not stop():
        time.sleep(POLL)
        try:
            size, now_inode = path.stat().st_size, _inode(path)
        except OSError:
            continue
        if size < offset or now_inode != inode:
            note(f"{path.name}: the task started again; its new log follows")
            offset, inode = 0, now_inode
        if size > offset:
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read(size - offset)
            out.write(data)
            out.flush()
            offset += len(data)


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def pod_logs_command(project: Project, pod: str, follow_it: bool) -> list[str]:
    if pod not in project.spec.pods:
        raise SpecError(f"no pod '{pod}' in {project.spec.file.name}"
                        f"{did_you_mean(pod, sorted(project.spec.pods))}")
    k8s_name = project.pods[pod].k8s_name
    return ["podman", "pod", "logs", "--names", *(["--follow"] if follow_it else []), k8s_name]


def show(project: Project, name: str, follow_it: bool, note: Callable[[str], None]) -> int:
    """`cpb logs NAME [-f]`: the exit code."""
    kind, target = split_task(name) if name.startswith("pod:") else ("", name)
    if kind == "pod":
        args = pod_logs_command(project, target, follow_it)
        if project.pods[target].k8s_name not in _running_pods(project):
            log = project.state.log_path(name)
            if not log.is_file():
                raise NoLog(f"pod {target} is not running and has never been started by "
                            "this project (`cpb up " + target + "`)")
            note(f"pod {target} is not running; the log of its last start "
                 f"({describe(project, name, log.stat().st_mtime)}):")
            copy_log(log, sys.stdout.buffer)
            return 0
        note(f"containers of pod {target} ({project.pods[target].k8s_name}):")
        try:
            return project.runner.run_attached(args)
        except KeyboardInterrupt:
            return 0  # how one stops following
    found = image_log(project, name)
    note(f"{found.path}: {found.about}")
    sys.stdout.flush()
    offset = copy_log(found.path, sys.stdout.buffer)
    if follow_it:
        try:
            follow(found.path, sys.stdout.buffer, offset, note)
        except KeyboardInterrupt:
            return 0  # how one stops following
    return 0


def _running_pods(project: Project) -> set[str]:
    return set(project.pod_store.pods())
