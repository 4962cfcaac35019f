from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Podman on the project's sandboxed machines needs these settings (see
# .ci/containers.conf); a developer's own CONTAINERS_CONF wins. Integration
# tests never skip when a tool is missing: they fail, so a broken machine
# cannot pass as green.
os.environ.setdefault("CONTAINERS_CONF", str(REPO / ".ci" / "containers.conf"))
