"""What the service keeps on disk, and for how long.

Each job owns one folder (its private copy of the input, chunk intermediates, outputs). Chunks
go once the job is assembled, and the input copy with them; finished jobs' folders go after a TTL;
a folder with no job record (a crash between mkdir and insert) or an unfinished upload goes once
it is older than ``leftover_age_s``. Space is checked before work is accepted: the volume keeps
``min_free_bytes`` free, and each owner stays under ``owner_quota_bytes``.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from serving.settings import ServeSettings
from serving.store import FINAL_STATES, JobStore
from serving.untrusted import Refused

log = logging.getLogger("vfx.serving.retention")
INPUT_PREFIX = "input"
INCOMING_PREFIX = ".incoming-"


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass  # deleted while we walked
    return total


def owner_usage(store: JobStore, owner: str) -> int:
    return sum(dir_bytes(Path(job["job_dir"])) for job in store.jobs_with_files(owner))


def check_space(settings: ServeSettings, store: JobStore, owner: str, incoming: int) -> None:
    """Refused(507) when ``incoming`` more bytes would leave the volume below its reserve or the
    owner over their quota."""
    retention = settings.retention
    free = shutil.disk_usage(settings.state_path).free
    if free - incoming < retention.min_free_bytes:
        raise Refused(507, f"not enough free space on the service's volume for {incoming} more bytes; try later")
    quota = retention.quota_of(owner)
    if owner_usage(store, owner) + incoming > quota:
        raise Refused(507, f"{owner}'s job files would exceed the quota of {quota} bytes; "
                           "delete or wait for old jobs to expire")


def drop_intermediates(job: dict[str, Any]) -> None:
    """After assembly: chunk files and the service's copy of the input are no longer needed."""
    directory = Path(job["job_dir"])
    shutil.rmtree(directory / "chunks", ignore_errors=True)
    for path in directory.glob(f"{INPUT_PREFIX}*"):
        path.unlink(missing_ok=True)


def sweep(store: JobStore, settings: ServeSettings, now: float | None = None) -> dict[str, int]:
    """Delete expired job folders and crash leftovers; returns counts of what went."""
    now = time.time() if now is None else now
    ttl = settings.retention.job_ttl_hours * 3600
    counts = {"expired": 0, "intermediates": 0, "orphans": 0, "incoming": 0}
    known: set[str] = set()
    for job in store.jobs_with_files():
        directory = Path(job["job_dir"])
        known.add(directory.name)
        if job["state"] in FINAL_STATES and (job["finished_at"] or job["created_at"]) + ttl < now:
            shutil.rmtree(directory, ignore_errors=True)
            store.update_job(job["id"], files_deleted_at=now)
            counts["expired"] += 1
        elif job["state"] in FINAL_STATES and (directory / "chunks").exists():
            drop_intermediates(job)  # a crash between "done" and the clean-up
            counts["intermediates"] += 1
    jobs_root = settings.state_path / "jobs"
    old = now - settings.retention.leftover_age_s
    for entry in (jobs_root.iterdir() if jobs_root.is_dir() else []):
        if entry.name not in known and entry.is_dir() and entry.stat().st_mtime < old and not store_has_dir(store, entry):
            shutil.rmtree(entry, ignore_errors=True)
            counts["orphans"] += 1
    for folder in (settings.state_path / "uploads", jobs_root):
        for entry in (folder.rglob(f"{INCOMING_PREFIX}*") if folder.is_dir() else []):
            if entry.is_file() and entry.stat().st_mtime < old:
                entry.unlink(missing_ok=True)
                counts["incoming"] += 1
    if any(counts.values()):
        log.info("retention sweep: %s", counts)
    return counts


def store_has_dir(store: JobStore, directory: Path) -> bool:
    """A folder whose job has expired records files_deleted_at; any job naming it keeps it."""
    return store.job_with_dir(str(directory)) is not None
