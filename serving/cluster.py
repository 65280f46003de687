"""More than one node: what every node must share, checked before the service takes a job.

- Job records: SQLite's WAL needs every writer on one host, and NFS/SMB locking is unreliable,
  so with more than one Ray node the records must be in PostgreSQL (``jobs_db``).
- Shared storage: chunk files, stored mattes and outputs live under the state directory and
  inputs under the input roots; every node must see them as the same files. The head writes a
  marker with a fresh token into the state directory and a zero-CPU task pinned to each node
  reads it back; a node that cannot see it (a local disk, a missing mount) stops the start.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

from serving.settings import ServeSettings
from vfx.errors import VfxError

MARKER_DIR = ".vfx-node-check"


def ray_environment(settings: ServeSettings) -> dict[str, str]:
    """What every Ray process of the service needs in its environment: the request guard in Ray's
    HTTP proxy (serving/proxy_guard.py) and workers started at niceness 0 (serving/priority.py)."""
    from serving.priority import ANSWERING
    from serving.proxy_guard import proxy_environment

    return {**proxy_environment(settings), **ANSWERING}


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def refuse_shared_sqlite(db_url: str, nodes: int) -> None:
    """One line, before any job record is written, when SQLite would be shared across hosts."""
    if db_url.startswith("sqlite") and nodes > 1:
        raise VfxError(f"serve: job records are in SQLite ({db_url.split(':///', 1)[-1]}) but the Ray cluster has "
                       f"{nodes} nodes; SQLite needs one host and NFS/SMB locks are unreliable: set jobs_db to a "
                       "PostgreSQL URL (postgresql://user@host/db)")


def shared_paths(settings: ServeSettings) -> list[Path]:
    paths: list[Path] = []
    for name in settings.cluster.shared_paths:
        if name == "state_dir":
            paths.append(settings.state_path)
        elif name == "input_roots":
            paths += [Path(root).expanduser() for root in settings.input_roots]
        elif name == "keys_file":
            paths.append(Path(settings.keys_file).expanduser())
    return paths


def node_view(marker: str, token: str, paths: list[str]) -> dict[str, Any]:
    """Runs on one node: does it see the head's marker and every shared path?"""
    import ray

    try:
        seen = Path(marker).read_text() == token
    except OSError:
        seen = False
    return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "sees_state_dir": seen, "missing": [p for p in paths if not os.path.exists(p)]}


def check_nodes(settings: ServeSettings) -> list[dict[str, Any]]:
    """Every alive node's view of the shared paths; raises VfxError naming the nodes that differ."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes()
    refuse_shared_sqlite(settings.db_url, len(nodes))
    if not settings.cluster.check_nodes:
        return []
    folder = settings.state_path / MARKER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = folder / f"{token}.marker"
    tmp = marker.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(token)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(marker)
    view = ray.remote(num_cpus=0, max_retries=0)(node_view)
    paths = [str(p) for p in shared_paths(settings)]
    try:
        pending = {view.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                   .remote(str(marker), token, paths): n for n in nodes}
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=settings.cluster.check_timeout_s)
        views = ray.get(ready)
    finally:
        marker.unlink(missing_ok=True)
    problems = [f"node {pending[ref]['NodeManagerAddress']} did not answer in {settings.cluster.check_timeout_s:g} s"
                for ref in late]
    for seen in views:
        if not seen["sees_state_dir"]:
            problems.append(f"node {seen['host']} ({seen['node'][:8]}) does not see the head's state directory "
                            f"{settings.state_path}")
        if seen["missing"]:
            problems.append(f"node {seen['host']} ({seen['node'][:8]}) has no {', '.join(seen['missing'])}")
    if problems:
        raise VfxError("serve: shared storage: " + "; ".join(problems) + " (mount the same share on every node)")
    return views


def chunk_node_path(job_dir: Path, index: int) -> Path:
    return Path(job_dir) / "nodes" / f"chunk-{index:05d}.json"  # not under chunks/: that goes after assembly


def record_chunk_node(job_dir: Path, index: int, attempt: int) -> None:
    """Which node rendered a chunk (kept beside the chunk file, for the manifest and for operators)."""
    import json

    import ray

    path = chunk_node_path(job_dir, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                               "pid": os.getpid(), "attempt": attempt}))
    tmp.replace(path)
