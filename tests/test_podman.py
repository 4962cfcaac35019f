from __future__ import annotations

from cpb.adapters.podman import local_ref, sandbox_hint


def test_local_ref_adds_localhost_only_to_short_names() -> None:
    assert local_ref("p/img:1") == "localhost/p/img:1"
    assert local_ref("img:1") == "localhost/img:1"
    assert local_ref("localhost/p/img:1") == "localhost/p/img:1"
    assert local_ref("registry.example:5000/p/img:1") == "registry.example:5000/p/img:1"
    assert local_ref("docker.io/library/debian:12") == "docker.io/library/debian:12"


def test_sandbox_failures_get_the_fix() -> None:
    crun = "crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied"
    runc = "runc create failed: error setting rlimit type 7: operation not permitted"
    assert "CONTAINERS_CONF" in sandbox_hint(crun)
    assert "runtime = \"runc\"" in sandbox_hint(runc)
    assert sandbox_hint("Error: building at STEP 5: exit status 3") == ""
