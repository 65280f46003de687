"""Rendering is throughput work; answering requests is latency work. On a node whose cores are all
busy rendering, the HTTP proxy and the gateways must still get the CPU first, or a `GET /v1/jobs`
waits behind frames (1.4 s p99 with 8 live streams and 4 jobs on 2 cores, benchmarks/RESULTS.md).
Ray starts every worker at niceness 15 (its ``worker_niceness``), the proxy and gateways included,
which also puts them below any client or tool on the node at 0. So the service starts Ray's workers
at 0 (``ANSWERING``) and the rendering replicas lower themselves to 19: at equal demand the proxy
and the gateways get about 68x the CPU share of a rendering thread."""
from __future__ import annotations

import os

ANSWERING = {"RAY_worker_niceness": "0"}  # environment of the Ray that runs the service


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
