"""The runtime inside images: its wheel, the `wheel:` task, and what its code changes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cpb.adapters.artifacts import ArtifactCache
from cpb.naming import task_name
from cpb.project import Project, open_project
from cpb.resolve import runtime
from cpb.tasks.plan import make_plan
from cpb.tasks.wheel import do_wheel
from fakes import podman_fake
from helpers import build_file_tree

SPEC = """
    project: p
    images:
      base: {rootfs: {tar: base.tar}}
      nats: {from: base, modules: [computepods-nats]}
      majordomo: {from: base, modules: [computepods-majordomo]}
      worker: {from: base, packages: [gcc], modules: [computepods-worker]}
      plain: {from: base}
    pods:
      farm:
        containers:
          - {image: nats}
          - {image: majordomo}
          - {image: worker, name: gcc, replicas: 2}
          - {image: plain, env: {CP_WORKER_KIND: mine}}
    """


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    return build_file_tree(tmp_path / "proj", {"cpb.yaml": SPEC, "base.tar": "x"})


def opened(root: Path) -> Project:
    return open_project(root / "cpb.yaml", runner=podman_fake(),
                        cache=ArtifactCache(root.parent / "artifact-cache"))


@pytest.fixture
def runtime_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the runtime package that the test may edit, used as cpb's runtime."""
    copy = tmp_path / "cpb_runtime"
    shutil.copytree(runtime.runtime_folder(), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runtime, "runtime_folder", lambda: copy)
    runtime.runtime_wheel.cache_clear()
    yield copy
    runtime.runtime_wheel.cache_clear()


def test_the_wheel_is_the_same_bytes_for_the_same_files(runtime_copy: Path) -> None:
    first = runtime.runtime_wheel(runtime_copy)
    runtime.runtime_wheel.cache_clear()
    for path in runtime_copy.rglob("*.py"):
        path.touch()  # new mtimes, same content
    again = runtime.runtime_wheel(runtime_copy)
    assert first.data == again.data and first.sha256 == hashlib.sha256(again.data).hexdigest()


def test_the_wheel_installs_and_imports_without_cpb(tmp_path: Path, runtime_copy: Path) -> None:
    wheel = runtime.runtime_wheel(runtime_copy)
    path = tmp_path / wheel.name
    path.write_bytes(wheel.data)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "cpb_runtime/worker.py" in names and "cpb_runtime/py.typed" in names
        record = archive.read(f"cpb_runtime-{wheel.name.split('-')[1]}.dist-info/RECORD")
        assert b"cpb_runtime/worker.py,sha256=" in record
        archive.extractall(tmp_path / "site")
    # what the computepods-runtime module does in the image: unzip, import, no cpb around
    # -S: no .pth files, so cpb's editable install is not on the path; nats-py is
    import nats

    packages = str(Path(nats.__file__).parents[1])
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         "import sys; sys.path[:0] = sys.argv[1:]; "
         "import cpb_runtime.worker, cpb_runtime.majordomo, cpb_runtime.client; "
         "print(cpb_runtime.worker.__file__.startswith(sys.argv[1]), "
         "any(m == 'cpb' or m.startswith('cpb.') for m in sys.modules))",
         str(tmp_path / "site"), packages],
        capture_output=True, text=True)
    assert proc.stdout.split() == ["True", "False"], proc.stderr


def test_runtime_images_get_both_wheels_and_a_wheel_task(project_root: Path,
                                                          runtime_copy: Path) -> None:
    project = opened(project_root)
    names = {image: [a.name for a in project.spec.images[image].artifacts]
             for image in project.spec.images}
    wheel = runtime.runtime_wheel()
    assert names["majordomo"] == names["worker"] == [runtime.NATS_PY.name, wheel.name]
    assert names["nats"] == names["plain"] == names["base"] == []
    needs = set(project.graph.predecessors(task_name("build", "worker")))
    assert task_name("wheel", "cpb_runtime") in needs
    assert task_name("fetch", runtime.NATS_PY_SHA256) in needs
    # the task puts the wheel in the artifact cache under its sha256
    cache = project.cache
    assert not cache.has(wheel.sha256)
    do_wheel(project, "cpb_runtime")
    assert cache.path(wheel.sha256).read_bytes() == wheel.data


def test_a_change_to_the_runtime_rebuilds_exactly_its_images(project_root: Path,
                                                             runtime_copy: Path) -> None:
    before = opened(project_root)
    (runtime_copy / "worker.py").write_text((runtime_copy / "worker.py").read_text() + "\n# x\n")
    runtime.runtime_wheel.cache_clear()
    after = opened(project_root)
    changed = sorted(name for name in before.images
                     if before.images[name].digest != after.images[name].digest)
    assert changed == ["majordomo", "worker"]


def test_workers_learn_their_kind_and_where_nats_is(project_root: Path,
                                                    runtime_copy: Path) -> None:
    project = opened(project_root)
    env = {c.name: dict(c.env) for c in project.spec.pods["farm"].containers}
    tls = {"CP_NATS_URL": "tls://nats:4222", "CP_NATS_CA": "/etc/computepods/tls/ca.crt",
           "CP_NATS_CERT": "/etc/computepods/tls/tls.crt",
           "CP_NATS_KEY": "/etc/computepods/tls/tls.key"}
    assert env["gcc"] == {**tls, "CP_WORKER_KIND": "gcc"}
    assert env["majordomo"] == tls
    assert env["nats"] == {} and env["plain"] == {"CP_WORKER_KIND": "mine"}  # own env kept
    manifest = project.pods["farm"].manifest
    # replicas share the pod's host name: each is told its own worker name
    assert '{name: "CP_WORKER_NAME", value: "gcc-1"}' in manifest
    assert '{name: "CP_WORKER_NAME", value: "gcc-2"}' in manifest


def test_plan_says_why_the_wheel_task_runs(project_root: Path, runtime_copy: Path) -> None:
    project = opened(project_root)
    planned = {task.task: task.reasons for task in make_plan(project, ["build:worker"])}
    assert any("runtime's wheel" in reason for reason in planned["wheel:cpb_runtime"])
