"""Pods in the spec, the graph, the manifests and the plan (no podman started)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import pod_security
from cpb.adapters.pods import container_health
from cpb.cli.app import main
from cpb.errors import SpecError
from cpb.graph import expand_graph
from cpb.project import open_project
from cpb.resolve.kube import LABEL_DIGEST
from cpb.spec.model import load_spec
from cpb.spec.pods import k8s_name
from cpb.tasks.plan import make_plan
from cpb.tasks.podops import cluster_image_ref, cluster_yaml
from cpb.tasks.pods import expected_containers
from cpb.tasks.table import TASK_KINDS
from fakes import podman_fake
from helpers import build_file_tree

REPO = Path(__file__).resolve().parents[1]
K8S_VERSION = "1.29"

SPEC = """
project: farm
images:
  base:
    rootfs: {tar: base.tar}
  nats:
    from: base
    ports: [4222]
  majordomo:
    from: base
    ports: [8000]
  worker_gcc:
    from: base
pod_defaults:
  labels: {team: compilers}
  env: {NATS_URL: "nats://nats:4222"}
  resources: {cpu: "100m"}
  stop_timeout: 3
pods:
  farm:
    containers:
      - {image: nats, args: [-p, "4222"], resources: {memory: 64Mi}}
      - {image: majordomo, env: {LEVEL: 2, DEBUG: false}}
      - image: worker_gcc
        replicas: 3
        command: [/bin/sh, -c]
        args: ["exec run-worker"]
        volumes:
          - {volume: cache, mount: /cache}
          - {host: shared, mount: /shared, read_only: true}
    ports: ["127.0.0.1:14222:4222", "8080:8000/tcp"]
    hosts: {db.internal: 10.1.2.3}
    labels: {tier: batch}
  solo:
    containers:
      - {image: nats, name: queue}
"""


def make(tmp_path: Path, spec: str = SPEC) -> Path:
    build_file_tree(tmp_path, {"cpb.yaml": spec, "base.tar": "not a tar"})
    return tmp_path / "cpb.yaml"


def validate_all(text: str) -> list[str]:
    kinds = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    return kinds


def test_pods_are_normalised_with_defaults(tmp_path: Path) -> None:
    spec = load_spec(make(tmp_path))
    assert list(spec.pods) == ["farm", "solo"]
    farm = spec.pods["farm"]
    nats, majordomo, worker = farm.containers
    assert (nats.name, nats.role, nats.ports, nats.args) == ("nats", "service", (4222,),
                                                             ("-p", "4222"))
    assert nats.resources.cpu == "100m" and nats.resources.memory == "64Mi"
    assert dict(majordomo.env) == {"NATS_URL": "nats://nats:4222", "LEVEL": "2",
                                   "DEBUG": "false"}
    assert (worker.name, worker.role, worker.replicas, worker.args) == (
        "worker-gcc", "worker", 3, ("exec run-worker",))
    cache, shared = worker.volumes
    assert cache.volume == "cache" and cache.host is None
    assert shared.host_path == tmp_path / "shared" and shared.read_only
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in farm.ports] == [
        ("127.0.0.1", 14222, 4222, "TCP"), (None, 8080, 8000, "TCP")]
    assert dict(farm.labels) == {"team": "compilers", "tier": "batch"}
    assert farm.stop_timeout == 3 and farm.restart == "Always"
    assert spec.pods["solo"].containers[0].name == "queue"


def test_pod_nodes_need_their_images_tags(tmp_path: Path) -> None:
    graph = expand_graph(load_spec(make(tmp_path)), TASK_KINDS)
    assert sorted(graph.predecessors("pod:farm")) == ["tag:majordomo", "tag:nats",
                                                      "tag:worker_gcc"]
    assert sorted(graph.predecessors("pod:solo")) == ["tag:nats"]


@pytest.mark.parametrize(("change", "message"), [
    ("      - {image: nats, name: queue}", "pods.solo.containers[0].image: 'natz' is not an "
     "image of this spec (did you mean 'nats'?)"),
    ("      - {image: nats, name: queue, replica: 2}", "unknown key 'replica' (did you mean "
     "'replicas'?)"),
    ("      - {image: nats, name: queue, volumes: [{host: a, volume: b, mount: /x}]}",
     "give exactly one of 'host' or 'volume' (both given)"),
    ("      - {image: nats, name: queue}\n      - {image: nats, name: queue}",
     "container name 'queue' is already used by pods.solo.containers[0]"),
    ("      - {image: nats, name: queue}\n    ports: [4222]",
     "pods.solo.ports[0]: expected a string, got an integer; quote it"),
    ("      - {image: nats, name: queue}\n    ports: [\"4222\"]", "is not a published port"),
])
def test_pod_spec_errors_name_the_place(tmp_path: Path, change: str, message: str) -> None:
    text = SPEC.replace("      - {image: nats, name: queue}", change)
    if "natz" in message:
        text = text.replace("{image: nats, name: queue}", "{image: natz, name: queue}")
    with pytest.raises(SpecError) as info:
        load_spec(make(tmp_path, text))
    assert message in str(info.value)
    assert str(info.value).startswith("cpb.yaml:")


def test_pod_manifest_is_a_valid_pod_for_podman(tmp_path: Path) -> None:
    project = open_project(make(tmp_path), runner=podman_fake())
    text = project.pods["farm"].manifest
    assert validate_all(text) == ["Pod"]
    pod = yaml.safe_load(text)
    assert pod["metadata"]["name"] == "farm-farm"
    assert pod["metadata"]["labels"][LABEL_DIGEST] == project.pods["farm"].label
    spec = pod["spec"]
    names = [c["name"] for c in spec["containers"]]
    assert names == ["nats", "majordomo", "worker-gcc-1", "worker-gcc-2", "worker-gcc-3"]
    nats = spec["containers"][0]
    assert nats["image"] == project.images["nats"].digest_ref
    assert nats["ports"] == [{"containerPort": 4222, "protocol": "TCP", "hostPort": 14222,
                              "hostIP": "127.0.0.1"}]
    assert spec["containers"][1]["ports"][0]["hostPort"] == 8080
    assert "ports" not in spec["containers"][3]  # a replica does not publish twice
    assert {"ip": "127.0.0.1", "hostnames": ["majordomo", "nats", "worker-gcc",
                                             "worker-gcc-1", "worker-gcc-2",
                                             "worker-gcc-3"]} in spec["hostAliases"]
    assert {"ip": "10.1.2.3", "hostnames": ["db.internal"]} in spec["hostAliases"]
    claims = {v["name"]: v for v in spec["volumes"]}
    assert claims["vol-cache"]["persistentVolumeClaim"] == {"claimName": "farm-cache"}
    host = next(v for v in spec["volumes"] if "hostPath" in v)
    assert host["hostPath"]["path"] == str(tmp_path / "shared")
    worker = spec["containers"][2]
    assert worker["command"] == ["/bin/sh", "-c"] and worker["args"] == ["exec run-worker"]
    assert {"name": host["name"], "mountPath": "/shared", "readOnly": True} in \
        worker["volumeMounts"]
    assert spec["terminationGracePeriodSeconds"] == 3
    assert nats["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"}}


def test_cluster_manifest_has_deployments_and_services(tmp_path: Path) -> None:
    project = open_project(make(tmp_path), runner=podman_fake())
    text = cluster_yaml(project, "farm")
    assert validate_all(text) == ["Deployment", "Service", "Deployment", "Service",
                                  "Deployment"]
    docs = [d for d in yaml.safe_load_all(text) if d]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(services) == {"nats", "majordomo"}  # same names as in the pod form
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    worker = deployments["farm-worker-gcc"]
    assert worker["spec"]["replicas"] == 3
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"farm/worker_gcc:cpb-{project.images['worker_gcc'].digest[:12]}"
    assert not any("hostPort" in p for d in deployments.values()
                   for c in d["spec"]["template"]["spec"]["containers"]
                   for p in c.get("ports", []))
    selector = services["nats"]["spec"]["selector"]
    assert deployments["farm-nats"]["spec"]["template"]["metadata"]["labels"].items() \
        >= selector.items()


def test_kube_command_prints_both_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec_file = make(tmp_path)
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: podman_fake())
    assert main(["-f", str(spec_file), "kube", "solo"]) == 0
    assert validate_all(capsys.readouterr().out) == ["Pod"]
    assert main(["-f", str(spec_file), "kube", "farm", "--cluster"]) == 0
    assert validate_all(capsys.readouterr().out).count("Deployment") == 3
    assert main(["-f", str(spec_file), "kube", "frm"]) == 2
    assert "no pod 'frm' in cpb.yaml (did you mean 'farm'?)" in capsys.readouterr().err


def examples_with_pods() -> list[Path]:
    found = sorted(REPO.glob("examples/*/cpb.yaml")) + [REPO / "templates/init/cpb.yaml"]
    return [p for p in found if "\npods:" in p.read_text()]


def test_every_example_pod_validates(tmp_path: Path) -> None:
    spec_files = examples_with_pods()
    assert REPO / "templates/init/cpb.yaml" in spec_files  # the starter has a pod
    starter = tmp_path / "starter"
    shutil.copytree(REPO / "templates/init", starter)
    text = (starter / "cpb.yaml").read_text()
    (starter / "cpb.yaml").write_text(text.replace("@PROJECT@", "starter"))
    spec_files = [starter / "cpb.yaml" if "templates" in p.parts else p for p in spec_files]
    for spec_file in spec_files:
        project = open_project(spec_file, runner=podman_fake())
        assert project.pods, spec_file
        for name in project.pods:
            assert validate_all(project.pods[name].manifest) == ["Pod"]
            assert "Deployment" in validate_all(cluster_yaml(project, name))


def test_kubernetes_validate_works_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("kubernetes-validate tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "x", "image": "i", "ports": [{"hostPort": 1}]}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# -- digests and plan ---------------------------------------------------------

def running(project: Any, name: str, *, digest: str | None = None,
            status: str = "Running") -> dict[str, Any]:
    build = project.pods[name]
    containers = [{"Id": f"c{i}", "Names": shown, "Status": status.lower()}
                  for i, shown in enumerate(sorted(expected_containers(project, name)))]
    return {"Name": build.k8s_name, "Id": "p1", "Status": status,
            "Containers": [{"Id": "i", "Names": "p1-infra", "Status": "running"}, *containers],
            "Labels": {LABEL_DIGEST: digest or build.label}}


def test_pod_digest_follows_spec_and_images_only(tmp_path: Path) -> None:
    spec_file = make(tmp_path)
    first = open_project(spec_file, runner=podman_fake()).pods
    spec_file.write_text(SPEC.replace("ports: [8000]", "ports: [8000]\n    env: {X: 1}"))
    second = open_project(spec_file, runner=podman_fake()).pods
    assert first["solo"].digest == second["solo"].digest  # majordomo is not in it
    assert first["farm"].digest != second["farm"].digest
    assert first["farm"].components["spec"] == second["farm"].components["spec"]
    spec_file.write_text(SPEC.replace("stop_timeout: 3", "stop_timeout: 4"))
    third = open_project(spec_file, runner=podman_fake()).pods
    assert third["farm"].components["spec"] != first["farm"].components["spec"]


def test_plan_says_why_a_pod_is_recreated(tmp_path: Path) -> None:
    spec_file = make(tmp_path)
    fake = podman_fake()
    project = open_project(spec_file, runner=fake)
    # `cpb plan` leaves out pods that are down, unless asked for
    assert not any(p.task.startswith("pod:") for p in make_plan(project))
    asked = {p.task: p for p in make_plan(project, ["pod:solo"])}
    assert asked["pod:solo"].reasons == ["pod farm-solo is not running"]

    # running, with a record of what it was made from
    old = project.pods["farm"]
    project.state.write_stamp("pod:farm", {"digest": old.digest, "components": old.components})
    fake.storage.pods = [running(project, "farm")]
    project = open_project(spec_file, runner=fake)
    assert "pod:farm" not in {p.task for p in make_plan(project) if p.pending}

    # an image of the pod changes: the build is pending, so is the pod
    spec_file.write_text(SPEC.replace("ports: [8000]", "ports: [8000]\n    env: {X: 1}"))
    project = open_project(spec_file, runner=fake)
    planned = {p.task: p for p in make_plan(project) if p.pending}
    assert planned["pod:farm"].reasons == ["image majordomo will be rebuilt"]
    assert "pod:solo" not in planned

    # the pod's own spec changes
    spec_file.write_text(SPEC.replace("replicas: 3", "replicas: 2"))
    project = open_project(spec_file, runner=fake)
    planned = {p.task: p for p in make_plan(project) if p.pending}
    assert planned["pod:farm"].reasons == ["pod spec changed"]

    # the same inputs, but the pod stopped
    spec_file.write_text(SPEC)
    project = open_project(spec_file, runner=fake)
    fake.storage.pods = [running(project, "farm", status="Exited")]
    project.pod_store.invalidate()  # asked again
    planned = {p.task: p for p in make_plan(project, ["pod:farm"]) if p.pending}
    assert planned["pod:farm"].reasons == ["pod farm-farm is Exited"]


def test_cluster_images_are_pinned_by_registry_manifest_once_pushed(tmp_path: Path) -> None:
    spec_file = make(tmp_path)
    project = open_project(spec_file, runner=podman_fake())
    image = sorted(project.images)[0]
    build = project.images[image]
    assert cluster_image_ref(project, image) == f"{build.repository}:cpb-{build.digest[:12]}"

    spec_file.write_text("registry: {url: 127.0.0.1:5999/farm, tls_verify: false}\n"
                         + spec_file.read_text())
    project = open_project(spec_file, runner=podman_fake())
    assert cluster_image_ref(project, image) == (
        f"127.0.0.1:5999/farm/{image}:cpb-{build.digest[:12]}")
    manifest = "sha256:" + "ab" * 32
    project.state.write_stamp(f"push:{image}", {"digest": build.digest, "manifest": manifest})
    assert cluster_image_ref(project, image) == f"127.0.0.1:5999/farm/{image}@{manifest}"


def test_a_pod_left_half_made_by_a_killed_up_is_made_again(tmp_path: Path) -> None:
    """`cpb up` killed during `podman kube play`: the pod has the new label but not
    all its containers; the next `cpb up` must replace it, not trust the label."""
    spec_file = make(tmp_path)
    fake = podman_fake()
    project = open_project(spec_file, runner=fake)
    whole = running(project, "farm")
    fake.storage.pods = [{**whole, "Containers": whole["Containers"][:-1]}]
    project = open_project(spec_file, runner=fake)
    planned = {p.task: p for p in make_plan(project, ["pod:farm"]) if p.pending}
    last = sorted(expected_containers(project, "farm"))[-1]
    assert planned["pod:farm"].reasons == [
        f"pod farm-farm lacks running containers {last} (an interrupted `cpb up`?)"]
    fake.storage.pods = [whole]
    project = open_project(spec_file, runner=fake)
    assert "pod:farm" not in {p.task for p in make_plan(project, ["pod:farm"]) if p.pending}


# -- what Kubernetes accepts is accepted, and validates ---------------------------

EDGES = """
project: farm_1
images:
  base:
    rootfs: {tar: base.tar}
  dns:
    from: base
    ports: [53]
pod_defaults:
  labels: {example.com/team: compilers, app.kubernetes.io/component: farm}
pods:
  farm:
    containers:
      - {image: dns, resources: {cpu: .5, memory: 1e3}}
      - {image: base, name: w, resources: {cpu: "+250m", memory: 1.5Gi}, env: {PEM: "a\\nb\\"c"}}
    ports: ["53:53/udp", "127.0.0.1:53:53/tcp", "127.0.0.2:8080:80"]
    hosts: {db.internal: "fd00::1", cache.internal: 10.0.0.2}
  other:
    containers: [{image: base}]
    ports: ["127.0.0.1:8080:80", "8080:80/udp"]
"""


def test_kubernetes_edge_values_are_accepted_and_validate(tmp_path: Path) -> None:
    project = open_project(make(tmp_path, EDGES), runner=podman_fake())
    pod = yaml.safe_load(project.pods["farm"].manifest)
    assert validate_all(project.pods["farm"].manifest) == ["Pod"]
    assert validate_all(project.pods["other"].manifest) == ["Pod"]
    assert "Deployment" in validate_all(cluster_yaml(project, "farm"))
    dns = pod["spec"]["containers"][0]
    # 53/tcp and 53/udp are two ports, both on the container that listens on 53
    assert sorted((p["containerPort"], p["protocol"], p.get("hostPort")) for p in dns["ports"]
                  if p["containerPort"] == 53) == [(53, "TCP", 53), (53, "UDP", 53)]
    assert dns["resources"] == {"requests": {"cpu": "0.5", "memory": "1e3"}}


@pytest.mark.parametrize(("ports", "other", "message"), [
    ('["8080:80"]', '["8080:81"]', "pods.other.ports[0]: host port 8080/tcp is already "
                                   "published by pods.farm.ports[0]"),
    ('["127.0.0.1:8080:80"]', '["8080:81"]', "host port 8080/tcp is already published"),
    ('["8080:80", "8080:81"]', '["9090:80"]', "pods.farm.ports[1]: host port 8080/tcp is "
                                              "already published by pods.farm.ports[0]"),
    ('["65536:80"]', '["1:80"]', "pods.farm.ports[0]: host port 65536 is not a port number"),
])
def test_a_host_port_is_published_once_per_machine(tmp_path: Path, ports: str, other: str,
                                                   message: str) -> None:
    spec = (EDGES.replace('["53:53/udp", "127.0.0.1:53:53/tcp", "127.0.0.2:8080:80"]', ports)
            .replace('["127.0.0.1:8080:80", "8080:80/udp"]', other))
    with pytest.raises(SpecError) as info:
        load_spec(make(tmp_path, spec))
    assert message in str(info.value)


def test_a_long_image_name_makes_a_container_name_kubernetes_takes(tmp_path: Path) -> None:
    image = "a" * 41 + "_b"
    spec = SPEC.replace("worker_gcc", image)
    project = open_project(make(tmp_path, spec), runner=podman_fake())
    names = [c.name for c in project.spec.pods["farm"].containers]
    assert names[2] == "a" * 41  # cut at 42 characters, then the trailing '-' removed
    assert validate_all(project.pods["farm"].manifest) == ["Pod"]


# -- replicas that listen, pod security, the cluster's registry (issue 18) -----

LISTENING = """
project: farm
images:
  base:
    rootfs: {tar: base.tar}
  web:
    from: base
    ports: [8080]
  quiet:
    from: base
pods:
  web:
    containers:
      - image: quiet
        replicas: 3
      - image: web
        replicas: 2
"""


def test_replicas_of_a_listening_container_are_refused_in_the_pod_form_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec_file = make(tmp_path, LISTENING)
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: podman_fake())
    why = ("cpb: error: cpb.yaml:16:19: pods.web.containers[1].replicas: 2 replicas of 'web' "
           "cannot run in one Podman pod: it listens on 8080 and the pod's containers share "
           "one network, so only one replica could bind it; use replicas: 1 for `cpb up`, "
           "or `cpb kube --cluster` (each replica its own pod)\n")
    for argv in (["up", "web"], ["up"], ["kube", "web"], ["plan", "pod:web"]):
        assert main(["-f", str(spec_file), *argv]) == 2, argv
        assert capsys.readouterr().err == why, argv
    # the cluster form runs each replica in its own pod: kept
    assert main(["-f", str(spec_file), "kube", "web", "--cluster"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs
                if d["kind"] == "Deployment"}
    assert replicas == {"web-quiet": 3, "web-web": 2}
    # the spec loads (its images build): only the pod form is refused
    assert load_spec(spec_file).pods["web"].pod_form_error == why[len("cpb: error: "):-1]


@pytest.mark.parametrize("change", [
    ("        replicas: 2\n", "        replicas: 1\n"),  # one replica: fine
    ("    ports: [8080]\n", ""),  # listens on nothing: fine
])
def test_replicas_that_can_share_a_pod_are_kept(tmp_path: Path, change: tuple[str, str]) -> None:
    spec = load_spec(make(tmp_path, LISTENING.replace(*change)))
    assert spec.pods["web"].pod_form_error is None


def test_a_published_port_nobody_declares_makes_the_first_container_listen(
        tmp_path: Path) -> None:
    text = LISTENING.replace("    ports: [8080]\n", "") + '    ports: ["9000:9000"]\n'
    error = load_spec(make(tmp_path, text)).pods["web"].pod_form_error
    assert error is not None and "pods.web.containers[0].replicas: 3 replicas of 'quiet'" \
        in error and "listens on 9000" in error


def cluster_docs(project: Any, pod: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(cluster_yaml(project, pod)) if d]


def test_every_example_cluster_manifest_meets_the_restricted_standard(tmp_path: Path) -> None:
    starter = tmp_path / "starter"
    assert main(["init", str(starter)]) == 0
    spec_files = [starter / "cpb.yaml" if "templates" in p.parts else p
                  for p in examples_with_pods()]
    checked = 0
    for spec_file in spec_files:
        project = open_project(spec_file, runner=podman_fake())
        for name in project.pods:
            text = cluster_yaml(project, name)
            assert "Deployment" in validate_all(text)  # still valid Kubernetes
            # a container the example relaxes on purpose (`security: {restricted: false}`,
            # with its reason in a comment there) is not held to the profile
            relaxed = {k8s_name(f"{name}-{c.name}") for c in project.spec.pods[name].containers
                       if not c.restricted}
            for doc in (d for d in yaml.safe_load_all(text) if d and d["kind"] != "Service"):
                if doc["metadata"]["name"] in relaxed:
                    continue
                assert pod_security.violations(doc) == [], spec_file
                checked += 1
    assert checked >= 1


def test_restricted_checks_see_what_the_standard_forbids(tmp_path: Path) -> None:
    project = open_project(make(tmp_path), runner=podman_fake())
    # the pod form (for podman) sets no securityContext and publishes host ports
    pod = yaml.safe_load(project.pods["farm"].manifest)
    controls = {v.split(": ")[1] for v in pod_security.violations(pod)}
    assert controls >= {"Privilege Escalation", "Running as Non-root", "Seccomp",
                        "Capabilities", "Host Ports", "HostPath Volumes", "Volume Types"}
    # the cluster form: restricted, except what the images do not allow: they run as
    # root (no `user`), and one container mounts a host folder
    found = [v for d in cluster_docs(project, "farm") if d["kind"] == "Deployment"
             for v in pod_security.violations(d)]
    assert {v.split(": ")[1] for v in found} == {"Running as Non-root", "HostPath Volumes",
                                                 "Volume Types"}


def test_security_context_follows_the_images_user_and_the_spec(tmp_path: Path) -> None:
    text = SPEC.replace("    ports: [4222]\n", "    ports: [4222]\n    user: \"4222\"\n") \
        .replace("    ports: [8000]\n", "    ports: [8000]\n    user: daemon\n") \
        .replace("{image: majordomo,", "{image: majordomo, security: {restricted: false},")
    project = open_project(make(tmp_path, text), runner=podman_fake())
    contexts = {d["metadata"]["name"]:
                d["spec"]["template"]["spec"]["containers"][0].get("securityContext")
                for d in cluster_docs(project, "farm") if d["kind"] == "Deployment"}
    assert contexts["farm-nats"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True, "runAsUser": 4222}
    assert contexts["farm-majordomo"] is None  # relaxed in the spec
    assert "runAsNonRoot" not in contexts["farm-worker-gcc"]  # root: no `user`
    assert contexts["farm-worker-gcc"]["allowPrivilegeEscalation"] is False
    nats = [d for d in cluster_docs(project, "farm") if d["metadata"]["name"] == "farm-nats"]
    assert pod_security.violations(nats[0]) == []
    # the pod form stays as podman plays it
    assert "securityContext" not in project.pods["farm"].manifest
    with pytest.raises(SpecError, match=r"cpb.yaml:21:34: pods\.farm\.containers\[0\]\."
                                        r"security\.restrictd: unknown key 'restrictd' "
                                        r"\(did you mean 'restricted'\?\)"):
        load_spec(make(tmp_path, SPEC.replace("{image: nats,",
                                              "{image: nats, security: {restrictd: false},")))


def test_cluster_form_without_a_registry_warns_or_refuses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec_file = make(tmp_path)
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: podman_fake())
    assert main(["-f", str(spec_file), "kube", "solo", "--cluster"]) == 0
    out, err = capsys.readouterr()
    assert "kind: Deployment" in out
    assert err.count("\n") == 1 and err.startswith(
        "cpb: warning: no 'registry:' in cpb.yaml: the cluster cannot pull these images")
    assert "`cpb push`" in err
    assert main(["-f", str(spec_file), "kube", "solo", "--cluster", "--strict"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cpb: error: no 'registry:' in cpb.yaml")
    # the pod form needs no registry; with one, no warning
    assert main(["-f", str(spec_file), "kube", "solo", "--strict"]) == 0
    assert capsys.readouterr().err == ""
    spec_file.write_text(SPEC + "registry: {url: 127.0.0.1:5999/farm}\n")
    assert main(["-f", str(spec_file), "kube", "solo", "--cluster", "--strict"]) == 0
    assert "no 'registry:'" not in capsys.readouterr().err


def test_cpb_build_refuses_a_pod_and_says_what_to_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec_file = make(tmp_path)
    fake = podman_fake()
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: fake)
    for argv in (["build", "pod:solo"], ["push", "pod:solo"], ["build", "--push", "pod:solo"]):
        assert main(["-f", str(spec_file), *argv]) == 2
        err = capsys.readouterr().err
        assert "builds images and starts no pod: for pod:solo run `cpb up solo`, or " \
            f"`cpb {argv[0]}{' --push' if '--push' in argv else ''} nats` for its images " \
            "only\n" in err, err
    assert fake.started["podman"] <= 1 and fake.started["cekit"] == 0  # nothing ran


# -- container health from `podman container inspect` --------------------------

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=timezone.utc)


def inspected(status: str, restarts: int, *, created: int, started: int,
              exit_code: int = 0) -> dict[str, Any]:
    """An entry as podman 4 writes it: times `seconds` before NOW, with nanoseconds."""
    def stamp(ago: int) -> str:
        return (NOW - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return {"Id": "c1", "RestartCount": restarts, "Created": stamp(created),
            "State": {"Status": status, "ExitCode": exit_code, "StartedAt": stamp(started)}}


@pytest.mark.parametrize(("entry", "shown", "stable", "failed"), [
    (inspected("running", 0, created=300, started=299), "running", True, False),
    # podman restarts at once: a crash loop is running or stopped, never for long
    (inspected("running", 7, created=60, started=0), "restarting, 7 restarts in 60 s",
     False, True),
    (inspected("stopped", 1, created=5, started=1, exit_code=1),
     "restarting, 1 restart in 5 s", False, True),
    # restarted once, long ago, and up since: stable again
    (inspected("running", 1, created=900, started=600),
     "running (1 restart, stable for 600 s)", True, False),
    (inspected("exited", 0, created=30, started=29, exit_code=2), "exited (exit code 2)",
     False, True),
    (inspected("exited", 0, created=30, started=29), "exited", False, False),  # a job done
])
def test_container_health_tells_a_crash_loop(entry: dict[str, Any], shown: str, stable: bool,
                                             failed: bool) -> None:
    health = container_health(entry, NOW)
    assert (health.describe(), health.stable, health.failed) == (shown, stable, failed)
    assert health.crash_looping == shown.startswith("restarting")
