"""Hostile projects run through the real `cpb` (podman, cekit, debootstrap): issue 19.

Each case is a project a stranger could ship. Whatever it tries, the host
must be unchanged (marker files absent, victim files byte-identical, victim
folders as they were), the error must be one line, and nothing may be built.
See docs/security.md, "Running cpb on a project you did not write".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import image_ids, podman

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"
SECRET = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIvictim victim@host\n"


def cpb(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "cpb", *args], cwd=root, text=True,
                          capture_output=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def refused(code: int, out: str, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert out == ""
    assert err.startswith("cpb: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err


BASE = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
"""
MODULE = ("schema_version: 1\nname: {name}\nversion: \"1.0\"\n{body}"
          "execute:\n  - script: install.sh\n")


def with_module(name: str, body: str) -> dict[str, str]:
    return {f"modules/{name}/module.yaml": MODULE.format(name=name, body=body),
            f"modules/{name}/install.sh": "#!/bin/sh\nset -e\ntrue\n"}


def jinja_payload(marker: Path) -> str:
    return "{{ cycler.__init__.__globals__.os.system('id > " + str(marker) + "') }}\n"


# (spec added to BASE's image, extra files, phrases of the one-line error);
# `@MARKER@` is a file on the host that must never appear.
INJECTIONS = {
    "cekit-help-template-cycler-globals": (
        "    cekit: {help: {add: true, template: help.j2}}\n",
        {"help.j2": "@JINJA@"}, ["images.base.cekit.help", "unsandboxed Jinja2"]),
    "module-help-template-cycler-globals": (
        "    modules: [helper]\n",
        {**with_module("helper", "help: {add: true, template: help.j2}\n"),
         "modules/helper/help.j2": "@JINJA@"},
        ["modules/helper/module.yaml:4:1: help:", "unsandboxed Jinja2"]),
    "artifact-target-newline-run": (
        "    artifacts:\n      - path: t.txt\n"
        "        target: \"t.txt x\\nRUN [\\\"sh\\\",\\\"-c\\\",\\\"id > /tmp/m\\\"]"
        "\\nCOPY t.txt\"\n",
        {"t.txt": "t"}, ["images.base.artifacts[0].target", "not a safe file name"]),
    "artifact-target-json-slash-escape": (
        "    artifacts:\n      - path: t.txt\n"
        "        target: 'x [\"sh\",\"-c\",\"id >\\u002ftmp\\u002fm\"]'\n",
        {"t.txt": "t"}, ["images.base.artifacts[0].target", "not a safe file name"]),
    "module-env-quote-newline-run-mount": (
        "    modules: [envy]\n",
        with_module("envy", "envs:\n  - name: X\n    value: \"a\\\"\\nRUN --mount=type=bind,"
                            "from=evil,source=/rootdir,target=/h,rw [\\\"sh\\\", \\\"-c\\\", "
                            "\\\"id > /h@MARKER@\\\"]\\nENV Y=\\\"b\"\n"),
        ["modules/envy/module.yaml:6:12: envs[0].value", "unescaped"]),
    "cekit-run-user-newline": (
        "    cekit: {run: {user: \"root\\nRUN [\\\"sh\\\", \\\"-c\\\", \\\"id\\\"]"
        "\\nUSER root\"}}\n",
        {}, ["images.base.cekit.run.user", "unescaped"]),
    "module-run-user-newline": (
        "    modules: [runner]\n",
        with_module("runner", "run:\n  user: \"root\\nRUN id\\nUSER root\"\n"),
        ["modules/runner/module.yaml:5:9: run.user", "unescaped"]),
}


@pytest.mark.parametrize("case", sorted(INJECTIONS))
def test_injection_is_refused_before_anything_runs(case: str, make_project,  # type: ignore[no-untyped-def]
                                                   project_name: str, tmp_path: Path) -> None:
    addition, files, phrases = INJECTIONS[case]
    marker = tmp_path / "pwned"
    texts = {name: text.replace("@JINJA@", jinja_payload(marker))
             .replace("@MARKER@", str(marker)) for name, text in files.items()}
    root = make_project(BASE + addition.replace("@MARKER@", str(marker)), texts)
    refused(*cpb(root, "build"), *phrases)
    assert not marker.exists()
    assert image_ids(project_name) == {}
    assert not (root / ".cpb").exists()


def test_module_artifact_auth_json_never_reaches_an_image(make_project,  # type: ignore[no-untyped-def]
                                                          project_name: str,
                                                          tmp_path: Path) -> None:
    victim = tmp_path / "home/.config/containers/auth.json"
    victim.parent.mkdir(parents=True)
    victim.write_text('{"auths": {"r.example": {"auth": "dXNlcjpzZWNyZXQ="}}}\n')
    before = victim.read_bytes()
    root = make_project(BASE + "    modules: [leak]\n",
                        with_module("leak", f"artifacts:\n  - path: {victim}\n    dest: /opt/\n"))
    refused(*cpb(root, "build", "--push"), "modules/leak/module.yaml:5:11: artifacts[0].path",
            f"--allow-host-path {victim}")
    assert victim.read_bytes() == before
    assert image_ids(project_name) == {}


def test_pod_volume_of_host_root_is_refused(make_project,  # type: ignore[no-untyped-def]
                                            project_name: str) -> None:
    root = make_project(BASE + "pods:\n  farm:\n    containers:\n"
                               "      - {image: base, volumes: [{host: /, mount: /hostroot}]}\n")
    for command in (["up", "farm"], ["kube", "--cluster", "farm"], ["build"]):
        refused(*cpb(root, *command), "pods.farm.containers[0].volumes[0].host",
                "--allow-host-path /")
    assert image_ids(project_name) == {}
    assert project_name not in podman("pod", "ps", "--format", "{{.Name}}")


# -- a shipped .cpb/ with links in it -------------------------------------------

MODULE_SPEC = BASE + "  worker:\n    from: base\n    modules: [chatty]\n"
CHATTY = with_module("chatty", "")
CHATTY["modules/chatty/install.sh"] = "#!/bin/sh\nset -e\necho MODULE-WAS-HERE\n"


@pytest.mark.parametrize("link", [".cpb/logs/build-worker.log", ".cpb/lock",
                                  ".cpb/state/build", ".cpb/render", ".cpb/doit.json"])
def test_a_shipped_link_in_cpb_is_refused(link: str, make_project,  # type: ignore[no-untyped-def]
                                          project_name: str, tmp_path: Path) -> None:
    victim = tmp_path / "authorized_keys"
    victim.write_text(SECRET)
    root = make_project(MODULE_SPEC, CHATTY)
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(victim)
    refused(*cpb(root, "build"), f"{link} is a symbolic link", "cpb clean")
    assert victim.read_text() == SECRET
    assert image_ids(project_name) == {}


def test_a_shipped_cpb_that_is_a_link_is_refused(make_project,  # type: ignore[no-untyped-def]
                                                 project_name: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text(SECRET)
    root = make_project(MODULE_SPEC, CHATTY)
    (root / ".cpb").symlink_to(victim)
    refused(*cpb(root, "build"), ".cpb is a symbolic link")
    assert "Traceback" not in cpb(root, "plan")[2]  # a plan only reads
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert (victim / "keep").read_text() == SECRET
    assert image_ids(project_name) == {}
    assert cpb(root, "clean")[0] == 0
    assert not (root / ".cpb").is_symlink() and (victim / "keep").read_text() == SECRET
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]


def test_clean_removes_links_without_following_them(make_project,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text(SECRET)
    root = make_project(BASE)
    (root / ".cpb/logs").mkdir(parents=True)
    (root / ".cpb/render").symlink_to(victim)
    (root / ".cpb/logs/build-base.log").symlink_to(victim / "keep")
    (root / ".cpb/lock").symlink_to(victim / "keep")
    code, out, err = cpb(root, "clean")
    assert (code, err) == (0, "")
    assert "removed the contents of" in out
    assert sorted(p.name for p in (root / ".cpb").iterdir()) == ["lock"]
    assert not (root / ".cpb/lock").is_symlink()
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert (victim / "keep").read_text() == SECRET


def test_debootstrap_never_runs_into_a_shipped_link(make_project,  # type: ignore[no-untyped-def]
                                                    project_name: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim-dir"
    victim.mkdir()
    (victim / "keep").write_text(SECRET)
    # a mirror nobody listens on: debootstrap starts writing its tree, then fails fast
    root = make_project('project: "@PROJECT@"\nimages:\n  base:\n    rootfs:\n'
                        "      debootstrap: {suite: bookworm, mirror: 'http://127.0.0.1:9/d'}\n")
    tree = root / ".cpb/build/base/rootfs/tree"
    tree.parent.mkdir(parents=True)
    tree.symlink_to(victim)
    code, out, err = cpb(root, "build")
    assert code == 1 and "FAIL rootfs:base: debootstrap exited" in out + err, out + err
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert (victim / "keep").read_text() == SECRET
    assert not tree.is_symlink()
    assert image_ids(project_name) == {}


def test_doctor_names_the_buildah_podman_builds_with(tmp_path: Path) -> None:
    version = podman("info", "--format", "{{.Host.BuildahVersion}}").strip()
    code, out, _ = cpb(tmp_path, "doctor")
    line = next(line for line in out.splitlines() if "CVE-2024-1753" in line)
    fixed = tuple(int(p) for p in version.split(".")) >= (1, 35, 0)
    assert line.startswith("ok " if fixed else "-- ") and version in line
    assert code == 0  # a warning, not a failed check
