"""Rendering is throughput work; answering requests is latency work. On a node whose cores are all
busy rendering, the HTTP proxy and the gateways must still get the CPU first, or a `GET /v1/jobs`
waits behind frames (1.4 s p99 with 8 live streams and 4 jobs on 2 cores, benchmarks/RESULTS.md).
Ray starts every worker at niceness 15 (its ``worker_niceness``), the proxy and gateways included,
so rendering replicas go to 19: at equal demand the others then get about 2.4x their CPU share."""
from __future__ import annotations

import os


def render_in_background(nice: int) -> None:
    """Lower every thread of this process to at least ``nice`` (Linux niceness is per thread, and a new
    thread starts with its creator's, so every thread started later inherits it)."""
    if nice <= 0 or not os.path.isdir("/proc/self/task"):
        return
    for task in os.listdir("/proc/self/task"):
        try:
            tid = int(task)
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except (ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            continue
