"""The project CA (issue 14): file modes, refusal of exposed keys, renewal, rotation."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from cpb.security import natsconf
from cpb.security.pki import (
    MAJORDOMO_ROLE,
    SUBMITTER_ROLE,
    Pki,
    PkiError,
    default_folder,
    worker_role,
)

ROLES = ["majordomo", "submitter", worker_role("gcc")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure(ROLES, ["nats"])
    assert mode(pki.folder) == 0o700
    keys = sorted(pki.folder.glob("*.key"))
    assert [k.stem for k in keys] == ["ca", "majordomo", "nats", "submitter", "worker-gcc"]
    assert all(mode(k) == 0o600 for k in keys)
    assert all(b"PRIVATE KEY" not in c.read_bytes() for c in pki.folder.glob("*.crt"))


def test_a_world_readable_key_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure(ROLES)
    os.chmod(pki.folder / "submitter.key", 0o644)
    with pytest.raises(PkiError, match=r"submitter.key: private key is mode 0644, readable "
                                       r"by others.*cpb pki rotate"):
        pki.ensure(ROLES)
    os.chmod(pki.folder / "submitter.key", 0o600)
    os.chmod(pki.folder, 0o755)
    with pytest.raises(PkiError, match="key folder is mode 0755"):
        pki.ensure(ROLES)


def test_the_server_certificate_names_how_nats_is_reached(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure(ROLES, ["nats", "farm-nats"])
    cert = x509.load_pem_x509_certificate((pki.folder / "nats.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(n.value) for n in san}
    assert names == {"nats", "farm-nats", "localhost", "127.0.0.1"}
    leaf = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=89) < leaf <= dt.timedelta(days=90)


def test_leaves_are_kept_then_renewed_before_they_run_out(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    first = pki.ensure(ROLES)
    assert pki.ensure(ROLES) == first  # nothing to do: same certificates
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=70)
    renewed = pki.ensure(ROLES, now=later)
    assert renewed["ca"] == first["ca"]
    assert all(renewed[r] != first[r] for r in ROLES)
    # a new name for the server renews only the server's certificate
    named = pki.ensure(ROLES, ["nats"], now=later)
    assert named["nats"] != renewed["nats"] and named["submitter"] == renewed["submitter"]


def test_rotation_makes_a_new_ca_and_new_leaves(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    before = pki.ensure(ROLES)
    pki.rotate()
    after = pki.ensure(ROLES)
    assert all(after[k] != before[k] for k in before)


def test_the_key_folder_is_outside_the_project(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    folder = default_folder(project, {"XDG_STATE_HOME": str(tmp_path / "state")})
    assert project not in folder.parents
    assert folder.parent == tmp_path / "state" / "cpb" / "pki"
    # the same project reached through a symbolic link has the same folder
    (tmp_path / "link").symlink_to(project)
    assert default_folder(tmp_path / "link", {"XDG_STATE_HOME": str(tmp_path / "state")}) \
        == folder


def test_the_rendered_permissions_follow_the_runtimes_subjects() -> None:
    from cpb_runtime import protocol as p

    assert natsconf.TASK_STREAM == p.TASK_STREAM
    gcc = natsconf.worker_permissions("gcc")
    assert f"$JS.API.CONSUMER.MSG.NEXT.{p.TASK_STREAM}.{p.task_consumer('gcc')}" in gcc.publish
    assert not any(s.endswith(">") and "clang" in s for s in gcc.publish)
    assert ">" not in gcc.subscribe
    conf = natsconf.render(["gcc"], natsconf.TlsPaths("/c", "/k", "/a"))
    assert "verify_and_map: true" in conf and '"CN=cp-worker-gcc"' in conf
    # each role hears the replies under its own inbox prefix, and nobody else's
    for role, prefix in ((worker_role("gcc"), p.worker_inbox("gcc")),
                         (MAJORDOMO_ROLE, p.MAJORDOMO_INBOX), (SUBMITTER_ROLE, p.SUBMITTER_INBOX)):
        subscribe = natsconf.role_permissions(["gcc"])[role].subscribe
        assert f"{prefix}.>" in subscribe
        assert not any(s.startswith("_INBOX") and s != f"{prefix}.>" for s in subscribe)


def test_cpb_pki_rotate_and_show_through_the_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    project = tmp_path / "proj"
    project.mkdir()
    (project / "cpb.yaml").write_text("project: p\nimages: {}\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}  # this tree's cpb
    env.pop("CPB_PKI_DIR", None)

    def cpb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cpb", "pki", *args], cwd=project,
                              env=env, capture_output=True, text=True, check=False)

    assert "no CA yet" in cpb("show").stdout
    first = cpb("rotate")
    assert first.returncode == 0, first.stderr
    folder = default_folder(project, env)
    ca = (folder / "ca.crt").read_bytes()
    shown = cpb("show")
    assert "CN=cp-submitter" in shown.stdout and "(89 days)" in shown.stdout
    assert cpb("rotate").returncode == 0
    assert (folder / "ca.crt").read_bytes() != ca
    os.chmod(folder / "submitter.key", 0o644)
    refused = cpb("show")
    assert refused.returncode == 3 and "readable by others" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
