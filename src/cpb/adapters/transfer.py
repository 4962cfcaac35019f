"""Moving images between local storage and a registry: `skopeo copy` and `podman push`.

Each transfer is bounded in time, never a hang; a failure is reported as the
registry being unreachable when it is, else as the command's failure.
"""

from __future__ import annotations

from pathlib import Path

from cpb.adapters.podman import PODMAN
from cpb.adapters.registry import Registry, RegistryUnreachable
from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import BuildError

SKOPEO = "skopeo"
TRANSFER_TIMEOUT = 1800  # seconds for one image's push or pull: bounded, never a hang


def pull_into_storage(runner: Runner, registry: Registry, source: str, local_ref: str,
                      log_file: Path) -> None:
    """Copy `source` (`<url>/<image>@<manifest>`) into local storage as `local_ref`.

    skopeo copies straight into local storage under the local name: one
    process, and no `<url>/...` name left behind in local storage.
    """
    args = [SKOPEO, "copy", "--quiet", f"--src-tls-verify={tls_verify_flag(registry)}",
            f"docker://{source}", f"containers-storage:{local_ref}"]
    _transfer(runner, registry, args, log_file, f"pulling {source}")


def push_from_storage(runner: Runner, registry: Registry, local_ref: str, target: str,
                      digest_file: Path, log_file: Path) -> str:
    """Push `local_ref` to `target`; the manifest digest the registry stored."""
    from cpb.state import remove_entry, state_folder

    state_folder(digest_file.parent)
    remove_entry(digest_file)  # podman writes it: never through a link a project shipped
    verify = tls_verify_flag(registry)
    _transfer(runner, registry, [PODMAN, "push", "--quiet", f"--tls-verify={verify}",
                                 "--digestfile", str(digest_file), local_ref,
                                 f"docker://{target}"], log_file, f"pushing {target}")
    return digest_file.read_text().strip()


def tls_verify_flag(registry: Registry) -> str:
    """`--tls-verify` for podman and skopeo, always explicit: an explicit `true`
    would override `insecure = true` in registries.conf, and the spec's
    `tls_verify: false` must reach them as well as cpb's own client."""
    return "true" if registry.verify else "false"


def _transfer(runner: Runner, registry: Registry, args: list[str], log_file: Path,
              doing: str) -> None:
    try:
        runner.run(args, log_file=log_file, timeout=TRANSFER_TIMEOUT)
    except CommandFailed as exc:
        if exc.timed_out:
            raise RegistryUnreachable(
                f"registry unreachable: {doing} took over {TRANSFER_TIMEOUT} s; "
                f"images built so far are kept; log: {log_file}") from None
        # The usual cause is the registry going away mid-run: say so plainly.
        try:
            registry.check()
        except RegistryUnreachable as down:
            raise RegistryUnreachable(f"{down} (while {doing}; log: {log_file})") from None
        tail = exc.tail(4).replace("\n", "\n    ")
        raise BuildError(f"{doing} failed: {exc}; log: {log_file}\n    {tail}") from None
