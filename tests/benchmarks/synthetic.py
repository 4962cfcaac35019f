"""Synthetic cpb projects for the benchmark, and a cheap stand-in for cekit.

`make_synthetic(root, project, images)` writes a project of `images` images:
a few bases imported from a busybox root file system, the rest in several
levels, each image built from one of the level above, each with two modules
of three files and two local artifacts.

`StubRunner()` is a Runner (tests/fakes.py) that replaces `cekit build` with a `podman build`
of a two-line Containerfile (`FROM <parent>` + the descriptor's labels), so
thousands of images are cheap while every image really is in local storage,
labelled and tagged the way a cekit build would leave it. Everything else —
podman queries, `podman import`, `podman tag` — runs for real.

`preload_images(project)` puts every image of an opened project into local
storage with one `podman load` (the way the stub build would, but for 2000
images in seconds): used only to set up the no-op cases, never measured.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import yaml

from cpb.adapters.runner import ProcessRunner
from cpb.project import Project
from fakes import FakeRunner
from helpers import busybox_rootfs_tar, remove_project_images  # noqa: F401 - for bench.py

BASES = 4
LEVELS = 4  # levels below the bases


def layout(images: int, bases: int = BASES, levels: int = LEVELS) -> dict[str, str | None]:
    """{image: parent or None}; parents always come from the level above."""
    bases = min(bases, images)
    parents: dict[str, str | None] = {f"base{i:02d}": None for i in range(bases)}
    previous = list(parents)
    rest = images - bases
    for level in range(1, levels + 1):
        count = rest // levels + (1 if level <= rest % levels else 0)
        current = [f"l{level}-{i:04d}" for i in range(count)]
        for index, name in enumerate(current):
            parents[name] = previous[index % len(previous)]
        if current:
            previous = current
    return parents


def module_name(image: str, which: str) -> str:
    return f"{image}-{which}"


def make_synthetic(root: Path, project: str, images: int, *, bases: int = BASES,
                   levels: int = LEVELS) -> dict[str, str | None]:
    """Write the project under root; return {image: parent}."""
    root.mkdir(parents=True, exist_ok=True)
    busybox_rootfs_tar(root / "busybox.tar")
    parents = layout(images, bases, levels)
    lines = [f"project: {project}", "images:"]
    for image, parent in parents.items():
        lines.append(f"  {image}:")
        lines.append("    rootfs: {tar: busybox.tar}" if parent is None else f"    from: {parent}")
        lines.append('    version: "1"')
        lines.append(f"    modules: [{module_name(image, 'a')}, {module_name(image, 'b')}]")
        lines.append("    artifacts:")
        for n in (1, 2):
            lines.append(f"      - {{path: artifacts/{image}-{n}.bin}}")
        for which in ("a", "b"):
            write_module(root / "modules" / module_name(image, which))
        for n in (1, 2):
            path = root / "artifacts" / f"{image}-{n}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(hashlib.sha256(f"{image}{n}".encode()).digest() * 32)
    (root / "cpb.yaml").write_text("\n".join(lines) + "\n")
    return parents


def write_module(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "module.yaml").write_text(
        f"schema_version: 1\nname: {folder.name}\nversion: \"1.0\"\n"
        "execute:\n  - script: install.sh\n")
    (folder / "install.sh").write_text(f"#!/bin/sh\nset -e\ncp data.txt /etc/{folder.name}\n")
    (folder / "install.sh").chmod(0o755)
    (folder / "data.txt").write_text(f"data of {folder.name}\n")


def module_files(root: Path, image: str) -> list[Path]:
    return [root / "modules" / module_name(image, w) / f
            for w in ("a", "b") for f in ("module.yaml", "install.sh", "data.txt")]


def artifact_files(root: Path, image: str) -> list[Path]:
    return [root / "artifacts" / f"{image}-{n}.bin" for n in (1, 2)]


def StubRunner() -> FakeRunner:  # noqa: N802 (reads as the runner it is)
    """A Runner whose `cekit build` is a one-line `podman build`; the rest runs for real.

    `started["cekit"]` still counts the cekit builds asked for; `built(runner)`
    names the images they were for (in order).
    """
    return FakeRunner(passthrough=ProcessRunner()).on("cekit", does=_stub_cekit)


def built(runner: FakeRunner) -> list[str]:
    """The images a StubRunner's `cekit build`s were for, in order."""
    return [Path(c[c.index("--descriptor") + 1]).parent.name for c in runner.ran("cekit")]


def _stub_cekit(args: list[str]) -> None:
    descriptor = Path(args[args.index("--descriptor") + 1])
    stub_build(descriptor, [args[i + 1] for i, a in enumerate(args) if a == "--tag"])


def stub_build(descriptor: Path, tags: list[str]) -> None:
    data = yaml.safe_load(descriptor.read_text())
    labels = {item["name"]: item["value"] for item in data.get("labels", [])}
    context = descriptor.parent / "stub"
    context.mkdir(exist_ok=True)
    lines = [f"FROM {data['from']}"]
    lines += [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in sorted(labels.items())]
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    tag_args = [a for t in tags for a in ("-t", t)]
    for attempt in range(3):
        # Storage shared with other builds: an image removed by another
        # process mid-build fails this one; a moment later it works.
        proc = subprocess.run(["podman", "build", "-q", *tag_args, str(context)],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        time.sleep(1 + attempt)
    raise RuntimeError(f"stub podman build of {tags} failed: {proc.stderr[-1000:]}")


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def preload_images(project: Project, archive: Path) -> None:
    """Every image of `project`, labelled and tagged as built, via one `podman load`.

    A docker-archive may hold many images; each gets its own config (so its
    own id) with the labels cpb's descriptor asks for, over one tiny layer.
    Root file system images are left to cpb: they are up to date as soon as
    the image built on them is.
    """
    manifest = []
    with tarfile.open(archive, "w") as tar:
        for build in project.images.values():
            # A layer of its own, as a real build has: images sharing a top
            # layer make podman's image listing quadratic.
            layer_buf = io.BytesIO()
            with tarfile.open(fileobj=layer_buf, mode="w") as layer_tar:
                _tar_add(layer_tar, f"etc/cpb-stub-{build.name}", build.digest.encode())
            layer = layer_buf.getvalue()
            diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
            layer_name = f"{diff_id[7:]}/layer.tar"
            _tar_add(tar, layer_name, layer)
            labels = {"io.cpb.project": project.spec.project, "io.cpb.image": build.name,
                      "io.cpb.digest": build.digest}
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "config": {"Labels": labels},
                                 # podman builds FROM it need a history entry per layer
                                 "history": [{"created_by": "cpb benchmark preload"}],
                                 "rootfs": {"type": "layers", "diff_ids": [diff_id]}},
                                sort_keys=True).encode()
            config_name = hashlib.sha256(config).hexdigest() + ".json"
            _tar_add(tar, config_name, config)
            manifest.append({"Config": config_name, "Layers": [layer_name],
                             "RepoTags": [build.digest_ref, build.version_ref]})
        _tar_add(tar, "manifest.json", json.dumps(manifest).encode())
    subprocess.run(["podman", "load", "-q", "-i", str(archive)], check=True,
                   capture_output=True)
    archive.unlink()
