"""Readiness: the service is ready only when every deployment of its applications has a running
replica. A deployment Ray cannot place (not enough CPUs, a GPU the node lacks) keeps /healthz
failing with its name, instead of accepting jobs nobody can run."""
from __future__ import annotations

import time
from typing import Any

CACHE_S = 1.0
BAD_STATES = ("UNHEALTHY", "DEPLOY_FAILED")


def waiting_for(status: Any, app_names: tuple[str, ...]) -> list[str]:
    """What keeps the applications from being ready, from a ``serve.status()``; empty when ready."""
    waiting = []
    for app_name in app_names:
        app = status.applications.get(app_name)
        if app is None:
            waiting.append(f"application {app_name} is not deployed")
            continue
        for name, deployment in app.deployments.items():
            states = {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()}
            state = str(getattr(deployment.status, "value", deployment.status))
            if states.get("RUNNING", 0) == 0 or state in BAD_STATES:
                others = ", ".join(f"{v} {k.lower()}" for k, v in sorted(states.items()) if k != "RUNNING") or "none"
                message = f": {deployment.message.splitlines()[0][:200]}" if deployment.message else ""
                waiting.append(f"{name} has no running replica ({others}; {state.lower()}){message}")
    return waiting


class Readiness:
    """``serve.status()`` asked at most once a second (load balancers probe often)."""

    def __init__(self, app_names: tuple[str, ...]):
        self.app_names = app_names
        self.checked = 0.0
        self.waiting: list[str] = ["not checked yet"]

    def check(self) -> list[str]:
        if time.monotonic() - self.checked >= CACHE_S:
            from ray import serve

            self.waiting = waiting_for(serve.status(), self.app_names)
            self.checked = time.monotonic()
        return self.waiting
