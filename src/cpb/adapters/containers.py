"""Which containers use a set of images, and removing them (for `cpb clean --images`).

`podman rmi` refuses an image a container uses, the container of a pod or
the working container buildah leaves behind when a `podman build` is
interrupted (Ctrl-C during a cekit build). `podman ps --external` lists both
kinds: buildah's have the state `storage` and belong to no pod.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cpb.adapters.podman import PODMAN
from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import EnvironmentProblem

# podman's state for a container it did not make (buildah's working containers)
EXTERNAL_STATE = "storage"


@dataclass(frozen=True)
class ImageUser:
    """A container that uses one of the images."""

    id: str
    name: str
    image_id: str
    image: str  # the reference it was made from, as podman shows it
    state: str
    pod_id: str  # "" outside a pod
    pod_name: str

    @property
    def build_leftover(self) -> bool:
        """A working container of an interrupted build (buildah's, not podman's)."""
        return self.state == EXTERNAL_STATE and not self.pod_id


def _podman_rows(runner: Runner, args: list[str], timeout: float) -> list[dict[str, Any]]:
    """podman's JSON listing `podman ARGS --format json`; a failure is one line."""
    try:
        rows = json.loads(runner.run([PODMAN, *args, "--format", "json"], timeout=timeout)
                          or "[]") or []
    except CommandFailed as exc:
        raise EnvironmentProblem(f"`podman {args[0]}` failed: {exc.tail(3) or exc}") from None
    except ValueError:
        raise EnvironmentProblem(f"`podman {args[0]}` printed something that is not JSON") \
            from None
    return list(rows)


def image_users(runner: Runner, image_ids: set[str]) -> list[ImageUser]:
    """Every container, running or not, in a pod or buildah's, made from one of `image_ids`
    (podman's infra containers aside)."""
    if not image_ids:
        return []
    rows = _podman_rows(runner, ["ps", "--all", "--external", "--pod", "--no-trunc"], 120)
    users = []
    for row in rows:
        image_id = row.get("ImageID", "")
        if image_id not in image_ids or row.get("IsInfra"):
            continue
        names = row.get("Names") or [row.get("Id", "")[:12]]
        users.append(ImageUser(id=row.get("Id", ""), name=names[0], image_id=image_id,
                               image=row.get("Image", ""), state=row.get("State", ""),
                               pod_id=row.get("Pod", ""), pod_name=row.get("PodName", "")))
    return sorted(users, key=lambda u: (u.pod_name, u.name))


def descendants_of(runner: Runner, image_ids: set[str]) -> set[str]:
    """`image_ids` and every image built on one of them (the intermediate images of
    a build, whose working containers an interrupted build leaves too)."""
    rows = _podman_rows(runner, ["images", "--all"], 300)
    parents = {row.get("Id", ""): row.get("ParentId", "") for row in rows}
    found = set(image_ids)
    for image_id in parents:
        chain, seen = image_id, set()
        while chain and chain not in found and chain not in seen:
            seen.add(chain)
            chain = parents.get(chain, "")
        if chain in found:
            found |= seen
    return found


def remove_containers(runner: Runner, ids: list[str]) -> None:
    """Remove these containers (buildah's working containers included)."""
    if ids:
        try:
            runner.run([PODMAN, "rm", "--force", "--ignore", *ids], timeout=300)
        except CommandFailed as exc:
            raise EnvironmentProblem(f"`podman rm` failed: {exc.tail(3) or exc}") from None
