"""`rootfs:` tasks: a base image from a root file system, no registry needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cpb.adapters.podman import ImageStore
from cpb.adapters.runner import Runner
from cpb.errors import EnvironmentProblem
from cpb.spec.model import RootfsSpec


def recipe(rootfs: RootfsSpec, tar_sha256: str | None) -> dict[str, object]:
    """What identifies the root file system in the input digest."""
    if rootfs.tar is not None:
        return {"tar": tar_sha256}
    boot = rootfs.debootstrap
    assert boot is not None
    return {"debootstrap": {"suite": boot.suite, "variant": boot.variant,
                            "include": list(boot.include), "components": list(boot.components),
                            "mirror": boot.mirror}}


def make_rootfs(rootfs: RootfsSpec, ref: str, work: Path, log_file: Path,
                runner: Runner, store: ImageStore) -> None:
    """Import the root file system as `ref`; `work` is an empty folder made for this run."""
    if rootfs.tar is not None:
        store.import_tar(rootfs.tar, ref, log_file)
        return
    boot = rootfs.debootstrap
    assert boot is not None
    if os.geteuid() != 0:
        raise EnvironmentProblem("debootstrap needs root; make the tarball as root once and use "
                                 "`rootfs: {tar: FILE}`")
    tree, tar = work / "tree", work / "rootfs.tar"
    # debootstrap runs as root: only ever into a folder made here and now (an
    # existing `tree` could be a link a project shipped, to any folder)
    tree.mkdir()
    args = ["debootstrap", f"--variant={boot.variant}"]
    if boot.include:
        args.append("--include=" + ",".join(boot.include))
    if boot.components:
        args.append("--components=" + ",".join(boot.components))
    try:
        runner.run([*args, boot.suite, str(tree), boot.mirror], log_file=log_file)
        runner.run(["tar", "--numeric-owner", "--one-file-system", "-C", str(tree),
                    "-cf", str(tar), "."], log_file=log_file)
        store.import_tar(tar, ref, log_file)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        tar.unlink(missing_ok=True)
