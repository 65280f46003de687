"""Whether a new job may be accepted now: caps on active jobs, overall and per owner, and disk space.

Asked twice: by the request guard with the declared Content-Length before the body is read, and
by the submit route with the exact size once it is. A full queue is a 429 with Retry-After (come
back later); a full disk or quota is a 507.
"""
from __future__ import annotations

from serving.retention import check_space
from serving.settings import ServeSettings
from serving.store import JobStore
from serving.untrusted import Refused

ACTIVE = ("queued", "running", "assembling")


class Admission:
    def __init__(self, store: JobStore, settings: ServeSettings):
        self.store = store
        self.settings = settings

    def check(self, owner: str, incoming_bytes: int) -> None:
        jobs = self.settings.jobs
        retry = {"Retry-After": str(jobs.retry_after_s)}
        if self.store.count_jobs(ACTIVE, owner) >= jobs.max_active_jobs_per_owner:
            raise Refused(429, f"{owner} already has {jobs.max_active_jobs_per_owner} jobs queued or running; "
                               "wait for one to finish", retry)
        if self.store.count_jobs(ACTIVE) >= jobs.max_active_jobs:
            raise Refused(429, f"the service has {jobs.max_active_jobs} jobs queued or running; try later", retry)
        check_space(self.settings, self.store, owner, incoming_bytes)
