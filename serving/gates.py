"""The service's consent gate and job checks: what a client may and may not choose.

A face edit runs only through the server's consent gate: the consent store in the service's
settings, the job's (or stream's) project. A client never names a consent store. A job is
checked by planning it (vfx.job.plan_steps: a backend for every capability, no weights loaded).
"""
from __future__ import annotations

from typing import Any

from vfx import registry
from vfx.config import PipelineConfig
from vfx.errors import VfxError
from vfx.job import open_consent_gate, needs_consent, plan_steps


def check_config(config: PipelineConfig, device: str = "cpu") -> None:
    """Refuse (VfxError) what the service will not run, before any upload work or weights."""
    if needs_consent(config) and not config.consent.project:
        raise VfxError("face edits run only through the consent gate: give consent.project")
    plan_steps(config, device)


def server_gate(config: PipelineConfig, consent_db: str | None) -> Any:
    """The consent gate of a face edit: the server's consent store, the config's project."""
    return open_consent_gate(config.model_copy(update={"consent": config.consent.model_copy(update={"db": consent_db})}))


def gate_for(config: PipelineConfig, consent_db: str | None) -> Any | None:
    return server_gate(config, consent_db) if needs_consent(config) else None


def load_backends() -> None:
    """Register every backend now, in the constructor's one thread: the registry's lazy first load
    is not safe when several threads (overlapping batches, concurrent submits) plan at once."""
    registry.backends()
