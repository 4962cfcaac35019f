from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Podman on the project's sandboxed machines needs these settings (see
# .ci/containers.conf); a developer's own CONTAINERS_CONF wins. Integration
# tests never skip when a tool is missing: they fail, so a broken machine
# cannot pass as green.
os.environ.setdefault("CONTAINERS_CONF", str(REPO / ".ci" / "containers.conf"))
# The keys cpb makes for a pod's NATS (issue 14) go to $XDG_STATE_HOME/cpb/pki/: for
# the tests' throw-away projects, a throw-away folder, never the user's own.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="cpb-test-state-")
# cpb's user cache holds the render memo (cpb.resolve.rendermemo), one file per project
# folder: a throw-away folder for the tests' projects. The artifact cache stays the
# user's (downloads are worth keeping between runs), unless $CPB_CACHE_DIR says otherwise.
_user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
os.environ.setdefault("CPB_CACHE_DIR", str(_user_cache / "cpb" / "artifacts"))
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cpb-test-cache-")
