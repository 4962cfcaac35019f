"""Small helpers shared by the tests."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "mkdir", "cp", "chmod", "rm", "id", "true", "false",
           "test", "grep", "sleep", "env", "uname")


def build_file_tree(root: Path, files: dict[str, str]) -> Path:
    """Write {relative path: text} under root (text is dedented); return root."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        if rel.endswith(".sh"):
            path.chmod(0o755)
    return root


def busybox_rootfs_tar(path: Path) -> Path:
    """A tiny root file system: busybox, its applets, and /etc/passwd with root.

    cekit's generated Containerfile switches to `USER root`, which needs
    /etc/passwd; everything else a module script uses comes from busybox.
    """
    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)

    def add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w") as tar:
        for folder in ("bin", "etc", "tmp", "root", "usr", "usr/bin"):
            add_dir(tar, folder, 0o1777 if folder == "tmp" else 0o755)
        info = tar.gettarinfo(str(BUSYBOX), arcname="bin/busybox")
        with BUSYBOX.open("rb") as handle:
            tar.addfile(info, handle)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add_text(tar, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        add_text(tar, "etc/group", "root:x:0:\n")
    return path


def podman(*args: str) -> str:
    # The storage is shared with other projects' tests: a listing can race
    # with their removals ("image not known"); the next attempt is fine.
    for attempt in range(4):
        proc = subprocess.run(["podman", *args], capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout
        if "not known" not in proc.stderr or attempt == 3:
            proc.check_returncode()
        time.sleep(1)
    raise AssertionError("unreachable")


def listing() -> dict[str, str]:
    """{name: image id} of local storage, listed the way cpb lists it (buildah:
    `podman images` takes seconds once storage holds hundreds of images)."""
    for attempt in range(4):
        proc = subprocess.run(["buildah", "images", "--json", "--no-trunc"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            break
        if "not known" not in proc.stderr or attempt == 3:
            proc.check_returncode()
        time.sleep(1)
    return {name: entry["id"].removeprefix("sha256:")
            for entry in json.loads(proc.stdout or "[]") for name in entry.get("names") or []}


def image_ids(project: str) -> dict[str, str]:
    """{"<image>:<tag>": image id} for every image of `project` in local storage."""
    prefix = f"localhost/{project}/"
    return {name[len(prefix):]: image_id for name, image_id in listing().items()
            if name.startswith(prefix) and "/rootfs/" not in name}


def remove_project_images(project: str) -> None:
    prefix = f"localhost/{project}/"
    names = [n for n in listing() if n.startswith(prefix)]
    if names:
        subprocess.run(["podman", "rmi", "--force", "--ignore", *names], check=False,
                       capture_output=True)


def module(name: str, script: str) -> dict[str, str]:
    """Files of a cekit module `name` whose install script runs `script` (sh -e)."""
    return {
        f"modules/{name}/module.yaml": f"""
            schema_version: 1
            name: {name}
            version: "1.0"
            execute:
              - script: install.sh
            """,
        f"modules/{name}/install.sh": f"#!/bin/sh\nset -e\n{script}\n",
    }


SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cpb(root: Path, *argv: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """`cpb -f ROOT/cpb.yaml ARGV...` as a process of this tree's cpb."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "cpb", "-f", str(root / "cpb.yaml"), *argv],
                          capture_output=True, text=True, timeout=timeout, env=env)


def cpb_ok(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    proc = run_cpb(root, *argv)
    assert proc.returncode == 0, f"cpb {' '.join(argv)}: {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def copy_compile_farm(where: Path, prefix: str) -> tuple[Path, str, int]:
    """examples/compile-farm copied into `where` (without its work/ and job), under a
    project name of its own and with NATS published on a free port: (folder, name, port)."""
    root = where / "compile-farm"
    shutil.copytree(SRC.parent / "examples" / "compile-farm", root,
                    ignore=shutil.ignore_patterns("work", "job.yaml", ".cpb"))
    project = f"{prefix}-{uuid.uuid4().hex[:8]}"
    port = free_port()
    text = (root / "cpb.yaml").read_text()
    text = text.replace("project: compile-farm", f"project: {project}")
    text = text.replace('"127.0.0.1:4222:4222"', f'"127.0.0.1:{port}:4222"')
    assert project in text and str(port) in text
    (root / "cpb.yaml").write_text(text)
    return root, project, port
