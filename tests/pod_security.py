"""The Kubernetes Pod Security Standards' "restricted" profile, as checks on a manifest.

Written from the published standard
(https://kubernetes.io/docs/concepts/security/pod-security-standards/): the
restricted profile is cumulative, so it holds every Baseline control plus its
own. Each check names its control as the standard does. `violations` takes one
manifest document (a Pod, or a workload with a pod template) and returns what
a namespace labelled `pod-security.kubernetes.io/enforce: restricted` would
refuse, one line per violation; [] when it would admit it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Baseline "Capabilities": what a container may add.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                         "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP",
                         "SETUID", "SYS_CHROOT"}
# Baseline "SELinux": allowed types (user and role must be unset).
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}
# Baseline "Sysctls": the safe set.
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
# Restricted "Volume Types": the only sources allowed.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def pod_of(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, spec) of the pod a document is or makes."""
    if doc["kind"] == "Pod":
        return doc.get("metadata") or {}, doc["spec"]
    template = doc["spec"]["template"]  # Deployment, StatefulSet, DaemonSet, Job, ...
    return template.get("metadata") or {}, template["spec"]


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(field) or []):
            yield f"spec.{field}[{index}]", container


def violations(doc: dict[str, Any]) -> list[str]:
    metadata, spec = pod_of(doc)
    pod_sc: dict[str, Any] = spec.get("securityContext") or {}
    found: list[str] = []

    def bad(control: str, where: str, why: str) -> None:
        found.append(f"{doc['kind']} {doc['metadata']['name']}: {control}: {where}: {why}")

    containers = list(_containers(spec))
    # -- Baseline --------------------------------------------------------------
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        bad("HostProcess", "spec.securityContext.windowsOptions.hostProcess", "must be false")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad("Host Namespaces", f"spec.{field}", "must be unset or false")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            bad("HostPath Volumes", f"spec.volumes[{volume['name']}].hostPath", "forbidden")
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or value.startswith("localhost/")):
            bad("AppArmor", f"metadata.annotations[{key}]", f"{value!r} is not allowed")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad("Sysctls", "spec.securityContext.sysctls", f"{sysctl.get('name')} is not safe")
    for where, sc in [("spec", pod_sc)] + [(w, c.get("securityContext") or {})
                                          for w, c in containers]:
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") \
                or selinux.get("role"):
            bad("SELinux", f"{where}.securityContext.seLinuxOptions", "not allowed")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            bad("Seccomp", f"{where}.securityContext.seccompProfile", "Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad("AppArmor", f"{where}.securityContext.appArmorProfile", "Unconfined")
    for where, container in containers:
        sc = container.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad("HostProcess", f"{where}.securityContext.windowsOptions", "must be false")
        if sc.get("privileged"):
            bad("Privileged Containers", f"{where}.securityContext.privileged", "must be false")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            bad("Capabilities", f"{where}.securityContext.capabilities.add",
                f"{sorted(added - BASELINE_CAPABILITIES)} beyond the baseline set")
        for port in container.get("ports") or []:
            if port.get("hostPort", 0):
                bad("Host Ports", f"{where}.ports", f"hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            bad("/proc Mount Type", f"{where}.securityContext.procMount", "must be Default")
    # -- Restricted ------------------------------------------------------------
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad("Volume Types", f"spec.volumes[{volume['name']}]",
                f"{sorted(kinds - RESTRICTED_VOLUMES)} is not an allowed volume type")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsNonRoot") is False:
        bad("Running as Non-root", "spec.securityContext.runAsNonRoot", "must not be false")
    if pod_sc.get("runAsUser") == 0:
        bad("Running as Non-root user", "spec.securityContext.runAsUser", "must not be 0")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad("Seccomp", "spec.securityContext.seccompProfile.type", f"{pod_seccomp!r}")
    for where, container in containers:
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            bad("Privilege Escalation", f"{where}.securityContext.allowPrivilegeEscalation",
                "must be false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            bad("Running as Non-root", f"{where}.securityContext.runAsNonRoot",
                "must be true (here or for the pod)")
        if sc.get("runAsUser") == 0:
            bad("Running as Non-root user", f"{where}.securityContext.runAsUser",
                "must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost") and not (
                seccomp is None and pod_seccomp in ("RuntimeDefault", "Localhost")):
            bad("Seccomp", f"{where}.securityContext.seccompProfile.type",
                "must be RuntimeDefault or Localhost (here or for the pod)")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            bad("Capabilities", f"{where}.securityContext.capabilities.drop", "must hold ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad("Capabilities", f"{where}.securityContext.capabilities.add",
                "only NET_BIND_SERVICE may be added")
    return found
