"""nats-server's configuration for a pod: mutual TLS and per-role permissions.

The permissions are docs/runtime.md's "Permissions by role" table
(docs/security.md explains the threat model):

- a worker of kind K binds to its kind's existing consumer (``tasks-K``),
  fetches and acknowledges its tasks, publishes only results, ``started``
  notices and heartbeats of kind K, and hears only cancel notices of kind K;
- MajorDomo manages the JetStream objects and jobs and answers requests;
- the submitting user may only submit, query, list workers and cancel, and
  hear job events.

Each role hears its own replies only (nats-py's replies, JetStream's
acknowledgements and fetched messages): its connections use the inbox prefix
``_INBOX.<role>`` (cpb_runtime.protocol.inbox_prefix) and it may subscribe to
``_INBOX.<role>.>`` alone, so a worker cannot read the tasks fetched by
another kind or the answers MajorDomo gives the submitter. Plain-text
connections are refused (``tls`` with ``verify_and_map``: a client needs a
certificate of this project's CA whose subject is one of the users below).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cpb.security.pki import MAJORDOMO_ROLE, SUBMITTER_ROLE, user_of, worker_role

TASK_STREAM = "CP_TASKS"  # cpb_runtime.protocol's names, kept in step by a test



def inbox(role: str) -> str:
    """What a role may subscribe to for its replies (cpb_runtime.protocol.inbox_prefix)."""
    return f"_INBOX.{role}.>"

MD_REQUESTS = ("submit", "status", "results", "cancel", "workers")


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False


def worker_permissions(kind: str) -> Permissions:
    consumer = f"tasks-{kind}"
    return Permissions(
        publish=(f"$JS.API.CONSUMER.INFO.{TASK_STREAM}.{consumer}",
                 f"$JS.API.CONSUMER.MSG.NEXT.{TASK_STREAM}.{consumer}",
                 f"$JS.ACK.{TASK_STREAM}.{consumer}.>",
                 f"cp.v1.result.{kind}.>", f"cp.v1.started.{kind}.>", f"cp.v1.hb.{kind}.>"),
        subscribe=(inbox(worker_role(kind)), f"cp.v1.cancel.{kind}"))


def majordomo_permissions() -> Permissions:
    return Permissions(
        publish=("$JS.API.>", "$JS.ACK.CP_RESULTS.>", "$JS.ACK.CP_ADVISORIES.>",
                 "$KV.CP_JOBS.>", "cp.v1.task.>", "cp.v1.job.>", "cp.v1.cancel.>"),
        subscribe=("cp.v1.md.>", "cp.v1.hb.>", "cp.v1.started.>", inbox(MAJORDOMO_ROLE)),
        allow_responses=True)


def submitter_permissions() -> Permissions:
    return Permissions(publish=tuple(f"cp.v1.md.{r}" for r in MD_REQUESTS),
                       subscribe=("cp.v1.job.>", inbox(SUBMITTER_ROLE)))


def role_permissions(kinds: Iterable[str]) -> dict[str, Permissions]:
    roles = {MAJORDOMO_ROLE: majordomo_permissions(), SUBMITTER_ROLE: submitter_permissions()}
    for kind in sorted(set(kinds)):
        roles[worker_role(kind)] = worker_permissions(kind)
    return roles


@dataclass(frozen=True)
class TlsPaths:
    """Where nats-server finds its files (inside its container, or on the host)."""

    cert: str
    key: str
    ca: str


def render(kinds: Iterable[str], tls: TlsPaths, *, port: int = 4222, host: str | None = None,
           store_dir: str = "/data/jetstream") -> str:
    """The whole nats.conf. JSON strings are valid NATS config strings. Without
    ``host`` nats-server listens on every interface of its container (the pod's
    network namespace), as the stock module did."""
    q = json.dumps
    lines = ["# Written by cpb (issue 14): mutual TLS, one user per role.",
             *([f"host: {q(host)}"] if host else []), f"port: {port}",
             "jetstream {", f"  store_dir: {q(store_dir)}", "}",
             "tls {", f"  cert_file: {q(tls.cert)}", f"  key_file: {q(tls.key)}",
             f"  ca_file: {q(tls.ca)}", "  verify_and_map: true", "  timeout: 2", "}",
             "authorization {", "  users = ["]
    for role, perms in role_permissions(kinds).items():
        lines.append(f"    {{user: {q(user_of(role))}, permissions: {_perms(perms)}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def _perms(p: Permissions) -> str:
    q = json.dumps
    out = {"publish": "{allow: " + q(list(p.publish)) + "}",
           "subscribe": "{allow: " + q(list(p.subscribe)) + "}"}
    if p.allow_responses:
        out["allow_responses"] = "true"
    return "{" + ", ".join(f"{k}: {v}" for k, v in out.items()) + "}"


def digest_inputs(kinds: Iterable[str]) -> Mapping[str, object]:
    """What the permissions are, for the pod digest ("permissions changed")."""
    return {role: {"publish": list(p.publish), "subscribe": list(p.subscribe),
                   "allow_responses": p.allow_responses}
            for role, p in role_permissions(kinds).items()}
