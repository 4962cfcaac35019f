"""A fake command runner for unit tests of pure logic (never proof a feature works)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpb.adapters.runner import ProcessRunner


class FakeRunner(ProcessRunner):
    """Answers `podman images` and `buildah images` (names, no labels) from a
    list of images; refuses anything else."""

    def __init__(self, images: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.images = images or []
        self.calls: list[list[str]] = []

    def run(self, args: Sequence[str], **_: Any) -> str:  # type: ignore[override]
        self.calls.append(list(args))
        self.started[Path(args[0]).name] += 1
        if list(args[:2]) == ["podman", "images"]:
            return json.dumps(self.images)
        if list(args[:3]) == ["podman", "image", "inspect"]:
            wanted = set(args[3:])
            return json.dumps([i for i in self.images if i["Id"] in wanted])
        if list(args[:2]) == ["buildah", "images"]:
            return json.dumps([{"id": "sha256:" + i["Id"], "names": i["Names"]}
                               for i in self.images])
        raise AssertionError(f"unexpected command in a unit test: {args}")

    def add_image(self, image_id: str, names: list[str], labels: dict[str, str]) -> None:
        self.images.append({"Id": image_id, "Names": names, "Labels": labels})
