"""A pod's NATS back-plane as cpb sets it up (issue 14): who gets which files, the pod
digest's certificate and permission inputs, and the cluster's Secrets.

The real proof (a real pod refusing and denying) is
tests/integration/test_pod_tls.py; these are the parts that are plain logic.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from cpb.adapters.artifacts import ArtifactCache
from cpb.cli.app import main
from cpb.project import Project, open_project
from cpb.resolve.podtls import (
    CA_FILE,
    CERT_FILE,
    CONF_FILE,
    KEY_FILE,
    project_pki,
    write_pod_files,
)
from cpb.security.pki import PkiError
from cpb.tasks.pods import _changes
from fakes import FakeRunner
from helpers import build_file_tree

SPEC = """
    project: p
    images:
      base: {rootfs: {tar: base.tar}}
      nats: {from: base, modules: [computepods-nats], user: "1000"}
      majordomo: {from: base, modules: [computepods-majordomo], user: "1000"}
      worker: {from: base, packages: [gcc], modules: [computepods-worker]}
      plain: {from: base}
    pods:
      farm:
        containers:
          - {image: nats}
          - {image: majordomo}
          - {image: worker, name: gcc, replicas: 2}
          - {image: plain}
        ports: ["127.0.0.1:4222:4222"]
    """


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return build_file_tree(tmp_path / "proj", {"cpb.yaml": SPEC, "base.tar": "x"})


def opened(root: Path) -> Project:
    return open_project(root / "cpb.yaml", runner=FakeRunner(),
                        cache=ArtifactCache(root.parent / "artifact-cache"))


def test_each_container_gets_its_roles_files_only(root: Path) -> None:
    project = opened(root)
    tls = project.pods["farm"].tls
    assert tls is not None
    assert dict(tls.roles) == {"nats": "nats", "majordomo": "majordomo", "gcc": "worker-gcc"}
    assert tls.kinds == ("gcc",) and "nats" in tls.server_names
    given: dict[Path, int] = {}

    def chown(paths: list[Path], uid: int) -> None:  # records what podman's user gets
        given.update({p: uid for p in paths})

    pki = project_pki(project.spec)
    write_pod_files(pki, tls, project.spec.pods["farm"], "p-farm", chown)
    base = pki.folder / "pods" / "p-farm"
    assert sorted(p.name for p in base.iterdir()) == ["gcc", "majordomo", "nats"]
    assert sorted(p.name for p in (base / "nats").iterdir()) == \
        sorted([CA_FILE, CERT_FILE, KEY_FILE, CONF_FILE])
    assert sorted(p.name for p in (base / "gcc").iterdir()) == sorted([CA_FILE, CERT_FILE,
                                                                        KEY_FILE])
    for folder in base.iterdir():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o711
        for file in folder.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o400
    # the uid each container runs as: 1000 for nats and majordomo; the root worker's
    # files stay podman's user's (root in the container)
    assert {p.parent.name for p, uid in given.items() if uid == 1000} == {"nats", "majordomo"}
    assert not any(p.parent.name == "gcc" for p in given)
    cert = x509.load_pem_x509_certificate((base / "gcc" / CERT_FILE).read_bytes())
    assert cert.subject.rfc4514_string() == "CN=cp-worker-gcc"
    assert (base / "gcc" / KEY_FILE).read_bytes() == pki.files("worker-gcc").key.read_bytes()
    conf = (base / "nats" / CONF_FILE).read_text()
    assert "verify_and_map: true" in conf and '"CN=cp-worker-gcc"' in conf
    assert '"/etc/computepods/tls/tls.key"' in conf


def test_a_pod_without_the_stock_nats_gets_no_tls(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path / "proj", {"cpb.yaml": """
        project: q
        images:
          base: {rootfs: {tar: base.tar}}
          worker: {from: base, modules: [computepods-worker]}
        pods:
          p: {containers: [{image: worker, name: gcc}]}
        """, "base.tar": "x"})
    project = opened(root)
    assert project.pods["p"].tls is None
    assert "certificates" not in project.pods["p"].components
    assert "cpb-tls" not in project.pods["p"].manifest


def test_a_plan_makes_no_key_and_the_digest_follows_the_certificates(root: Path) -> None:
    first = opened(root).pods["farm"]
    pki = project_pki(opened(root).spec)
    assert not pki.folder.exists()  # resolving (a plan) wrote nothing
    assert set(first.components["certificates"].values()) == {""}  # to be issued
    tls = first.tls
    assert tls is not None
    pki.ensure(tls.client_roles, tls.server_names)
    issued = opened(root).pods["farm"]
    assert issued.digest != first.digest and "" not in issued.components["certificates"].values()
    assert opened(root).pods["farm"].digest == issued.digest  # stable while nothing changes
    pki.rotate()
    pki.ensure(tls.client_roles, tls.server_names)
    rotated = opened(root).pods["farm"]
    assert rotated.digest != issued.digest
    assert list(_changes(issued.components, rotated.components, set())) == \
        ["certificates renewed"]


def test_another_worker_kind_changes_the_permissions(root: Path) -> None:
    before = opened(root).pods["farm"]
    (root / "cpb.yaml").write_text((root / "cpb.yaml").read_text().replace(
        "- {image: plain}", "- {image: worker, name: clang}"))
    after = opened(root).pods["farm"]
    reasons = list(_changes(before.components, after.components, set()))
    assert "permissions changed" in reasons and "pod spec changed" in reasons


def test_a_container_user_given_by_name_is_refused(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path / "proj", {"cpb.yaml": SPEC.replace(
        'user: "1000"}\n      majordomo', 'user: nats}\n      majordomo'), "base.tar": "x"})
    project = opened(root)
    tls = project.pods["farm"].tls
    assert tls is not None
    with pytest.raises(Exception, match="numeric uid"):
        write_pod_files(project_pki(project.spec), tls, project.spec.pods["farm"], "p-farm",
                        lambda paths, uid: None)


def test_a_world_readable_key_stops_the_pods_files(root: Path) -> None:
    project = opened(root)
    tls = project.pods["farm"].tls
    assert tls is not None
    pki = project_pki(project.spec)
    pki.ensure(tls.client_roles, tls.server_names)
    os.chmod(pki.files("majordomo").key, 0o644)
    with pytest.raises(PkiError, match="majordomo.key: private key is mode 0644"):
        write_pod_files(pki, tls, project.spec.pods["farm"], "p-farm", lambda paths, uid: None)


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_cluster_manifests_reference_secrets_by_name_and_hold_no_key(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", str(root / "cpb.yaml"), "kube", "--cluster", "farm"]) == 0
    out, err = capsys.readouterr()
    assert "PRIVATE KEY" not in out and "kind: Secret" not in out
    assert not any(d["kind"] == "Secret" for d in _docs(out))
    deployments = {d["metadata"]["name"]: d for d in _docs(out) if d["kind"] == "Deployment"}
    nats = deployments["farm-nats"]["spec"]["template"]["spec"]
    assert {"name": "cpb-tls", "secret": {"secretName": "farm-nats-tls", "defaultMode": 0o400}} \
        in nats["volumes"]
    assert nats["securityContext"] == {"fsGroup": 1000}  # uid 1000 reads root's Secret files
    assert {"name": "cpb-tls", "mountPath": "/etc/computepods/tls", "readOnly": True} \
        in nats["containers"][0]["volumeMounts"]
    assert "private keys" not in err


def test_with_secrets_the_keys_come_with_a_warning(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", str(root / "cpb.yaml"), "kube", "--cluster", "--with-secrets",
                 "farm"]) == 0
    out, err = capsys.readouterr()
    secrets = {d["metadata"]["name"]: d["data"] for d in _docs(out) if d["kind"] == "Secret"}
    assert sorted(secrets) == ["farm-gcc-tls", "farm-majordomo-tls", "farm-nats-tls"]
    key = base64.b64decode(secrets["farm-gcc-tls"][KEY_FILE]).decode()
    assert "PRIVATE KEY" in key
    assert CONF_FILE in secrets["farm-nats-tls"] and CONF_FILE not in secrets["farm-gcc-tls"]
    warnings = [line for line in err.splitlines() if "private keys" in line]
    assert len(warnings) == 1 and warnings[0].startswith("cpb: warning:")


def test_with_secrets_needs_cluster(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", str(root / "cpb.yaml"), "kube", "--with-secrets", "farm"]) == 2
    assert "--with-secrets goes with --cluster" in capsys.readouterr().err


def test_the_podman_manifest_mounts_each_containers_folder_read_only(root: Path) -> None:
    build = opened(root).pods["farm"]
    pod = _docs(build.manifest)[0]["spec"]
    pki = project_pki(opened(root).spec)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cpb-tls-gcc"]["hostPath"] == {
        "path": str(pki.folder / "pods" / build.k8s_name / "gcc"), "type": "Directory"}
    mounts = {c["name"]: c.get("volumeMounts", []) for c in pod["containers"]}
    for name, volume in (("nats", "cpb-tls-nats"), ("gcc-1", "cpb-tls-gcc"),
                         ("gcc-2", "cpb-tls-gcc"), ("majordomo", "cpb-tls-majordomo")):
        assert {"name": volume, "mountPath": "/etc/computepods/tls", "readOnly": True} \
            in mounts[name]
    assert mounts["plain"] == []
    assert "PRIVATE KEY" not in build.manifest
