"""cpb_runtime — what runs inside a ComputePods pod: MajorDomo, workers, the submit client.

Self-contained: it needs only the standard library and nats-py, never cpb's
build side, so an image carries just this package and the nats-py wheel.

    python -m cpb_runtime.majordomo     # the job manager
    python -m cpb_runtime.worker        # a worker (CP_WORKER_KIND=gcc)

    from cpb_runtime import Client, parse_job
    async with await Client.connect() as client:
        outcome = await client.run(parse_job(data))

Subjects and message formats: cpb_runtime.protocol and docs/runtime.md.
"""

from __future__ import annotations

from cpb_runtime.client import Client, JobOutcome, Progress, new_job_id
from cpb_runtime.errors import (
    ConfigError,
    CpRuntimeError,
    FieldError,
    JobRefused,
    JobSpecError,
    LostContact,
    ProtocolError,
    UnknownJob,
    Unreachable,
    format_path,
)
from cpb_runtime.protocol import (
    PROTOCOL_VERSION,
    JobSpec,
    TaskResult,
    TaskSpec,
    parse_job,
    validate_job,
)
from cpb_runtime.settings import NatsSettings

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION", "Client", "ConfigError", "CpRuntimeError", "FieldError", "JobOutcome",
    "JobRefused", "JobSpec", "JobSpecError", "LostContact", "NatsSettings", "Progress",
    "ProtocolError", "TaskResult", "TaskSpec", "UnknownJob", "Unreachable", "__version__",
    "format_path", "new_job_id", "parse_job", "validate_job",
]
