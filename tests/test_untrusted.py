"""Running cpb on a project someone else wrote (issue 19; docs/security.md).

Each attack of the issue is a case here or in the hostile corpus
(tests/data/bad-specs, cases 89 to 112, run through the real CLI by
test_bad_specs.py). The cases that need a real build (cekit + podman) are
marked integration: they check that the host is unchanged (marker files
absent, victim files byte-identical), that the error is one line with exit 2,
and that nothing was built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import cpb.state
from cpb.cli.app import main
from cpb.cli.doctor import buildah_check
from cpb.errors import SpecError, UnsafeState
from cpb.spec.consent import CONSENT_ENV, HostPaths
from cpb.spec.model import load_spec
from cpb.state import (
    StateDir,
    fresh_file,
    fresh_folder,
    open_log,
    read_state_text,
    write_bytes_atomic,
)
from helpers import build_file_tree

SPEC = """
project: untrusted-{name}
images:
  base:
    rootfs: {{tar: base.tar}}
  worker:
    from: base
    modules: [{module}]
"""


def module_yaml(name: str, body: str = "") -> str:
    return (f"schema_version: 1\nname: {name}\nversion: \"1.0\"\n{body}"
            "execute:\n  - script: install.sh\n")


def project(root: Path, module: str, module_body: str = "", **extra: str) -> Path:
    build_file_tree(root, {
        "cpb.yaml": SPEC.format(name=module, module=module), "base.tar": "tar",
        f"modules/{module}/module.yaml": module_yaml(module, module_body),
        f"modules/{module}/install.sh": "#!/bin/sh\ntrue\n", **extra})
    return root / "cpb.yaml"


def run(spec: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["-f", str(spec), *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- host paths need the user's consent ------------------------------------------

SECRET = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIvictim victim@host\n"
AUTH = '{"auths": {"registry.example": {"auth": "dXNlcjpzZWNyZXQ="}}}\n'


def test_module_artifact_auth_json_needs_consent(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "home" / ".config" / "containers" / "auth.json"
    build_file_tree(tmp_path, {"home/.config/containers/auth.json": AUTH})
    spec = project(tmp_path / "proj", "leak",
                   f"artifacts:\n  - path: {victim}\n    dest: /opt/\n")
    code, out, err = run(spec, "plan", capsys=capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("cpb: error: modules/leak/module.yaml:5:11: artifacts[0].path: the "
                          f"artifact {victim} is outside the project")
    assert f"--allow-host-path {victim}" in err and CONSENT_ENV in err
    assert victim.read_text() == AUTH
    assert not (tmp_path / "proj" / ".cpb").exists()


def test_consented_module_artifact_is_part_of_the_digest(tmp_path: Path) -> None:
    victim = tmp_path / "shared" / "tool.bin"
    build_file_tree(tmp_path, {"shared/tool.bin": "one"})
    spec = project(tmp_path / "proj", "tool", f"artifacts:\n  - path: {victim}\n")
    consent = HostPaths.from_user([tmp_path / "shared"], env={})
    module = load_spec(spec, host_paths=consent).images["worker"].modules[0]
    assert [f.shown for f in module.files] == [
        "modules/tool/install.sh", "modules/tool/module.yaml", "modules/tool/artifact:tool.bin"]
    with pytest.raises(SpecError, match="outside the project"):
        load_spec(spec, host_paths=HostPaths.from_user([tmp_path / "other"], env={}))


def module_tree(name: str) -> dict[str, str]:
    return {f"{name}/module.yaml": module_yaml(name), f"{name}/install.sh": "#!/bin/sh\n"}


def test_a_module_folder_linked_out_of_the_project_needs_consent(tmp_path: Path) -> None:
    # modules/ is listed once per load to see which modules are links (model._Builder)
    build_file_tree(tmp_path / "elsewhere", module_tree("tool"))
    spec = project(tmp_path / "proj", "other")
    spec.write_text(SPEC.format(name="tool", module="tool, other"))
    (tmp_path / "proj" / "modules" / "tool").symlink_to(tmp_path / "elsewhere" / "tool")
    real = (tmp_path / "elsewhere" / "tool").resolve()
    with pytest.raises(SpecError, match=rf"cpb.yaml:8:14: images.worker.modules: module "
                                        rf"'tool' is a link to {real} is outside the project"):
        load_spec(spec, host_paths=HostPaths.from_user([], env={}))
    tool, other = load_spec(spec, host_paths=HostPaths.from_user(
        [tmp_path / "elsewhere"], env={})).images["worker"].modules
    assert (tool.real, tool.path) == (str(real), str(tmp_path / "proj" / "modules" / "tool"))
    assert [f.shown for f in tool.files] == ["modules/tool/install.sh", "modules/tool/module.yaml"]
    assert other.real == str((tmp_path / "proj" / "modules" / "other").resolve())


def test_a_module_folder_linked_inside_the_project(tmp_path: Path) -> None:
    spec = project(tmp_path / "proj", "other", **{
        f"shared/{rel}": text for rel, text in module_tree("tool").items()})
    spec.write_text(SPEC.format(name="tool", module="tool, other"))
    (tmp_path / "proj" / "modules" / "tool").symlink_to("../shared/tool")
    tool, other = load_spec(spec, host_paths=HostPaths.from_user([], env={})
                            ).images["worker"].modules
    assert tool.real == str((tmp_path / "proj" / "shared" / "tool").resolve())
    assert other.real == str((tmp_path / "proj" / "modules" / "other").resolve())


@pytest.mark.parametrize(("written", "refused", "outcome"), [
    ("files/inside.bin", False, "files/data.bin"), ("files/data.bin", False, "files/data.bin"),
    ("files/outside.bin", True, "the file .*victim.bin is outside the project"),
    ("files/fifo", True, "file not found: files/fifo"),
    ("files/folder", True, "files/folder is a folder")])
def test_a_local_artifact_is_what_its_links_lead_to(tmp_path: Path, written: str,
                                                    refused: bool, outcome: str) -> None:
    # each folder is resolved once, and a file is known by one lstat unless it is a link
    build_file_tree(tmp_path, {"victim.bin": "secret", "proj/files/data.bin": "data",
                               "proj/files/folder/x": "x"})
    spec = project(tmp_path / "proj", "tool")
    spec.write_text(SPEC.format(name="tool", module="tool") + "    artifacts:\n"
                    "      - {path: files/data.bin, name: first.bin}\n"
                    f"      - {{path: {written}}}\n")
    files = tmp_path / "proj" / "files"
    (files / "inside.bin").symlink_to("data.bin")
    (files / "outside.bin").symlink_to(tmp_path / "victim.bin")
    os.mkfifo(files / "fifo")
    if refused:
        with pytest.raises(SpecError, match=rf"cpb.yaml:11:16: images.worker.artifacts\[1\]"
                                            rf".path: {outcome}"):
            load_spec(spec, host_paths=HostPaths.from_user([], env={}))
        return
    first, second = load_spec(spec, host_paths=HostPaths.from_user([], env={})
                              ).images["worker"].artifacts
    assert first.path == second.path == (tmp_path / "proj" / outcome).resolve()
    assert second.name == "data.bin"


def test_consent_from_the_environment(tmp_path: Path) -> None:
    victim = tmp_path / "data"
    victim.mkdir()
    spec = build_file_tree(tmp_path / "proj", {
        "cpb.yaml": "project: p\nimages:\n  base: {rootfs: {tar: base.tar}}\npods:\n  farm:\n"
                    "    containers:\n"
                    f"      - {{image: base, volumes: [{{host: {victim}, mount: /d}}]}}\n",
        "base.tar": "tar"}) / "cpb.yaml"
    with pytest.raises(SpecError, match=r"cpb.yaml:7:\d+: pods.farm.containers\[0\]"
                                        r".volumes\[0\].host: the host folder"):
        load_spec(spec, host_paths=HostPaths.from_user([], env={}))
    consent = HostPaths.from_user([], env={CONSENT_ENV: f"/nonexistent:{victim}"})
    volume = load_spec(spec, host_paths=consent).pods["farm"].containers[0].volumes[0]
    assert volume.host_path == victim


def kube_spec(root: Path) -> Path:
    return build_file_tree(root, {
        "cpb.yaml": "project: untrusted-kube\nimages:\n  base: {rootfs: {tar: base.tar}}\n"
                    "pods:\n  farm:\n    containers:\n"
                    "      - {image: base, volumes: [{host: /, mount: /hostroot}]}\n",
        "base.tar": "tar"}) / "cpb.yaml"


def test_kube_cluster_emits_no_host_root_without_consent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = kube_spec(tmp_path)
    code, out, err = run(spec, "kube", "--cluster", "farm", capsys=capsys)
    assert (code, out) == (2, "")
    assert err == ("cpb: error: cpb.yaml:7:40: pods.farm.containers[0].volumes[0].host: the "
                   "host folder / is outside the project; a project cannot use host paths on "
                   "its own: if you trust it, allow it with `cpb --allow-host-path / ...` or "
                   f"{CONSENT_ENV}=/\n")


def test_kube_cluster_with_consent_mounts_it(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = kube_spec(tmp_path)
    code = main(["--allow-host-path", "/", "-f", str(spec), "kube", "--cluster", "farm"])
    out = capsys.readouterr().out
    assert code == 0
    volumes = [v for doc in yaml.safe_load_all(out) if doc
               for v in doc.get("spec", {}).get("template", {}).get("spec", {})
               .get("volumes", [])]
    assert {"path": "/", "type": "DirectoryOrCreate"} in [v.get("hostPath") for v in volumes]


# -- module descriptors ------------------------------------------------------------

def test_module_dependencies_are_found_checked_and_hashed(tmp_path: Path) -> None:
    spec = project(tmp_path, "top", "modules:\n  install:\n    - name: dep\n", **{
        "modules/dep/module.yaml": module_yaml("dep"),
        "modules/dep/install.sh": "#!/bin/sh\ntrue\n"})
    modules = load_spec(spec).images["worker"].modules
    assert [m.name for m in modules] == ["top", "dep"]
    (tmp_path / "modules/dep/module.yaml").write_text(
        module_yaml("dep", 'envs:\n  - {name: A, value: "x\\nRUN id"}\n'))
    with pytest.raises(SpecError, match=r"^modules/dep/module.yaml:5:\d+: envs\[0\].value: "):
        load_spec(spec)


def test_a_module_dependency_must_exist(tmp_path: Path) -> None:
    spec = project(tmp_path, "top", "modules:\n  install:\n    - name: nowhere\n")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert str(err.value) == ("modules/top/module.yaml:6:13: modules.install[0].name: module "
                              "'nowhere' not found in modules/ or cpb's built-in modules")


def test_a_second_module_yaml_inside_a_module_is_refused(tmp_path: Path) -> None:
    spec = project(tmp_path, "outer", **{"modules/outer/sub/module.yaml": module_yaml("inner")})
    with pytest.raises(SpecError, match="modules/outer/sub/module.yaml: a module holds one "
                                        "module.yaml"):
        load_spec(spec)


def test_module_artifact_inside_the_module_is_accepted(tmp_path: Path) -> None:
    spec = project(tmp_path, "files", "artifacts:\n  - {path: data/tool.bin, dest: /opt/}\n",
                   **{"modules/files/data/tool.bin": "bytes"})
    module = load_spec(spec).images["worker"].modules[0]
    assert "modules/files/data/tool.bin" in [f.shown for f in module.files]


def test_cekit_escape_hatch_keeps_what_is_allowed(tmp_path: Path) -> None:
    spec = build_file_tree(tmp_path, {
        "cpb.yaml": "project: p\nimages:\n  base:\n    rootfs: {tar: base.tar}\n"
                    "    cekit:\n      args: [{name: A, value: '1'}]\n"
                    "      volumes: [{path: /data}]\n"
                    "      run: {user: '1000', workdir: /srv}\n"
                    "      packages: {manager_flags: '-q'}\n",
        "base.tar": "tar"}) / "cpb.yaml"
    cekit = load_spec(spec).images["base"].cekit
    assert json.loads(json.dumps(dict(cekit))) == {
        "args": [{"name": "A", "value": "1"}], "volumes": [{"path": "/data"}],
        "run": {"user": "1000", "workdir": "/srv"}, "packages": {"manager_flags": "-q"}}


# -- nothing under .cpb/ is followed through a link (the builds: integration/) ----

@pytest.mark.parametrize("link", [".cpb", ".cpb/lock", ".cpb/logs/build-base.log",
                                  ".cpb/state/build", ".cpb/render/base", ".cpb/doit.json",
                                  ".cpb/build/base/target", ".cpb/hashes.json"])
def test_the_lock_refuses_a_link_where_cpb_writes(tmp_path: Path, link: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text(SECRET)
    root = tmp_path / "proj"
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(victim)
    with pytest.raises(UnsafeState) as err, StateDir(root).lock():
        pass
    assert str(err.value).startswith(f"{link} is a symbolic link (to {victim}); cpb never "
                                     "writes through links in .cpb/")
    assert victim.read_text() == SECRET


def test_writes_under_cpb_never_go_through_a_linked_folder(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    root = tmp_path / "proj"
    (root / ".cpb").mkdir(parents=True)
    (root / ".cpb/state").symlink_to(victim)
    with pytest.raises(UnsafeState, match=r"^\.cpb/state is a symbolic link"):
        StateDir(root).write_stamp("build:base", {"digest": "x"})
    assert list(victim.iterdir()) == []
    with pytest.raises(UnsafeState):
        write_bytes_atomic(root / ".cpb/state/x/y.json", b"{}")
    assert list(victim.iterdir()) == []


def test_a_log_that_became_a_link_is_not_opened(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(SECRET)
    log = tmp_path / ".cpb/logs/build-base.log"
    log.parent.mkdir(parents=True)
    log.symlink_to(victim)
    with pytest.raises(UnsafeState, match="build-base.log is a symbolic link"):
        open_log(log)
    fresh_file(log)  # a rename replaces the link itself
    assert not log.is_symlink() and log.read_bytes() == b""
    assert victim.read_text() == SECRET


def test_fresh_folder_removes_a_link_and_never_what_it_points_to(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text(SECRET)
    tree = tmp_path / "proj/.cpb/build/base/rootfs"
    tree.parent.mkdir(parents=True)
    tree.symlink_to(victim)
    assert fresh_folder(tree) == tree
    assert tree.is_dir() and not tree.is_symlink() and list(tree.iterdir()) == []
    assert (victim / "keep").read_text() == SECRET


# -- cpb doctor: the buildah that builds (the real one: integration/) -------------

@pytest.mark.parametrize(("version", "ok"), [("1.28.2", False), ("1.34.9", False),
                                             ("1.35.0", True), ("1.39.1", True), ("2.0", True)])
def test_doctor_warns_about_a_buildah_without_the_cve_2024_1753_fix(version: str,
                                                                     ok: bool) -> None:
    check = buildah_check(version)
    assert (check.ok, check.required) == (ok, False)
    assert ("CVE-2024-1753" in check.detail) != ok and version in check.detail


@pytest.mark.parametrize("target", ["/dev/zero", "victim"])
def test_state_files_are_read_without_following_links(tmp_path: Path, target: str) -> None:
    # `cpb plan` reads records without the lock: a shipped link must neither hang it
    # (/dev/zero) nor feed it another file's content
    victim = tmp_path / "victim"
    victim.write_text('{"digest": "forged"}')
    state = StateDir(tmp_path / "proj")
    stamp = state.stamp_path("build:base")
    stamp.parent.mkdir(parents=True)
    stamp.symlink_to(victim if target == "victim" else Path(target))
    assert state.read_stamp("build:base") is None
    with pytest.raises(OSError):
        read_state_text(stamp)
    fifo = state.root / "noop.json"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_state_text(fifo)


def test_state_files_over_the_size_limit_are_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpb.state, "MAX_STATE_FILE", 8)
    record = tmp_path / "record.json"
    for content in (b"", b"12345678"):
        record.write_bytes(content)
        assert read_state_text(record) == content.decode()
    record.write_bytes(b"123456789")
    with pytest.raises(OSError, match="too large"):
        read_state_text(record)
