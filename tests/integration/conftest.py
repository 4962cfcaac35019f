"""Fixtures for tests that use the real podman and cekit.

Each test gets its own project (a unique `project:` name, so its images do
not collide with another test's) on a busybox base imported with
`podman import`, and its images are removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import build_file_tree, busybox_rootfs_tar, remove_project_images


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs_tar(tmp_path_factory.mktemp("rootfs") / "busybox.tar")


@pytest.fixture
def project_name() -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    remove_project_images(name)


@pytest.fixture
def make_project(tmp_path: Path, busybox_tar: Path, project_name: str):  # type: ignore[no-untyped-def]
    """make_project(spec_text, files) -> project folder; `@PROJECT@` in texts is the name."""

    def make(spec: str, files: dict[str, str] | None = None) -> Path:
        root = tmp_path / "proj"
        texts = {"cpb.yaml": spec, **(files or {})}
        build_file_tree(root, {k: v.replace("@PROJECT@", project_name) for k, v in texts.items()})
        (root / "busybox.tar").write_bytes(busybox_tar.read_bytes())
        return root

    return make
