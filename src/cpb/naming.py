"""The names cpb gives things, each spelled here and nowhere else.

Tasks are named `KIND:SUBJECT` (`build:nats`, `fetch:<checksum>`, `pod:farm`);
`task_name` makes such a name and `split_task` takes one apart. An image
made from some inputs is tagged `cpb-<digest12>` and labelled with the full
input digest.
"""

from __future__ import annotations

# The kinds of task (see cpb.tasks.table for what each does).
ROOTFS = "rootfs"
RENDER = "render"
BUILD = "build"
TAG = "tag"
FETCH = "fetch"
POD = "pod"
PUSH = "push"
WHEEL = "wheel"

DIGEST_LABEL = "io.cpb.digest"  # the full input digest, on every image cpb builds
PROJECT_LABEL = "io.cpb.project"
IMAGE_LABEL = "io.cpb.image"
DIGEST_TAG_PREFIX = "cpb-"
SHORT_DIGEST = 12


def task_name(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


def split_task(name: str) -> tuple[str, str]:
    """(kind, subject) of a task name; ValueError for a name that is not `KIND:SUBJECT`."""
    kind, sep, subject = name.partition(":")
    if not sep or not kind:
        raise ValueError(f"not a task name (KIND:SUBJECT): {name!r}")
    return kind, subject


def short(digest: str) -> str:
    return digest[:SHORT_DIGEST]


def digest_tag(digest: str) -> str:
    """The tag naming an image by its input digest: `cpb-<digest12>`."""
    return DIGEST_TAG_PREFIX + short(digest)
