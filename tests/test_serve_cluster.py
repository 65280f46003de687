"""A VFX house's cluster: job records on PostgreSQL, the shared-storage check, and a real two-node
Ray cluster on this machine whose worker node is killed mid-job.

The cluster is started with `ray start` (a head and a worker node, each with its own temp dir and
ports) and stopped by killing exactly the processes started for it: other Ray clusters on this
machine are never touched.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from serve_helpers import REPO, SAMPLES, free_port, wait_healthy, wait_job, write_keys, submit, ServeApp
from serving.store import Chunk, JobStore
from vfx.errors import VfxError

PG_URL = os.environ.get("VFX_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="VFX_TEST_PG_URL is not set; start a server with: "
                                                  "eval \"$(.ci/postgres.sh start)\"")
pytestmark = [pytest.mark.postgres, needs_pg]
RAY = str(Path(sys.executable).with_name("ray"))
NIGHT = {"restyle": {"style": "night"}}


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    import psycopg

    name = f"vfx_jobs_{uuid.uuid4().hex[:12]}"
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"{admin.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def job_fields(key: str | None = None) -> dict:
    return {"owner": "operator", "idempotency_key": key, "request_digest": "d" * 64, "input_path": "/in.avi",
            "input_sha256": "s" * 64, "uploaded": False, "config_json": "{}", "first_frame": 0, "last_frame": 23,
            "want_matte": False, "job_dir": "/state/jobs/x"}


def test_job_records_on_postgresql(pg_url):
    stores: list[JobStore] = []
    threads = [threading.Thread(target=lambda: stores.append(JobStore(pg_url))) for _ in range(4)]
    for thread in threads:  # four replicas starting at once race to create the tables
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(stores) == 4
    a, b = stores[0], stores[1]
    job, created = a.create_job(job_fields("shot-7"))
    again, created_again = b.create_job(job_fields("shot-7"))
    assert (created, created_again, again["id"]) == (True, False, job["id"])
    plan = [Chunk(job["id"], i, max(0, 8 * i - 2), 8 * i, 8 * i + 7) for i in range(3)]
    assert b.ensure_chunks(job["id"], plan) == plan
    assert a.ensure_chunks(job["id"], [plan[0]]) == plan  # the first plan stands
    assert a.start_attempt(job["id"], 1) == 1 and b.start_attempt(job["id"], 1) == 2
    assert b.set_state(job["id"], "cancelled") and not a.set_state(job["id"], "running")
    assert JobStore(pg_url.replace("postgresql://", "postgres://")).state_of(job["id"]) == "cancelled"
    assert [c.attempts for c in a.chunks(job["id"])] == [0, 2, 0]


# -- a real two-node Ray cluster --------------------------------------------------------------
def _ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def _ray_start(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([RAY, "start", *args], env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed: {done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def _node_args(temp_dir: Path, worker_ports: int) -> list[str]:
    nm, om, agent, grpc, env_agent, metrics = _ports(6)
    return ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", str(temp_dir),
            "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
            "--node-manager-port", str(nm), "--object-manager-port", str(om), "--dashboard-agent-listen-port", str(agent),
            "--dashboard-agent-grpc-port", str(grpc), "--runtime-env-agent-port", str(env_agent),
            "--metrics-export-port", str(metrics), "--min-worker-port", str(worker_ports),
            "--max-worker-port", str(worker_ports + 199)]


def _processes_under(root: Path) -> list[psutil.Process]:
    """Every process whose command line names this cluster's temp dir: the ones this test started."""
    mine = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(root) in part for part in process.info["cmdline"] or []):
                mine.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return mine


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=20)


@pytest.fixture()
def two_nodes(monkeypatch) -> Iterator[dict]:
    root = Path(tempfile.mkdtemp(prefix="r16", dir="/tmp"))  # unix socket paths must stay short
    # the cluster's own token: a head may insist on token auth (e.g. when ~/.ray/auth_token exists)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", os.urandom(32).hex())
    env = {**os.environ, "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "3", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    base = random.Random(os.getpid()).randrange(21000, 29000, 400)
    head_port, client_port = _ports(2)
    try:
        _ray_start(["--head", "--port", str(head_port), "--ray-client-server-port", str(client_port), "--include-dashboard", "false",
                    *_node_args(root / "head", base)], env)
        _ray_start(["--address", f"127.0.0.1:{head_port}", "--resources", json.dumps({"vfx_worker_node": 1}),
                    *_node_args(root / "worker", base + 200)], env)
        yield {"address": f"127.0.0.1:{head_port}", "root": root}
    finally:
        _kill(_processes_under(root))


def _worker_node_processes(root: Path) -> list[psutil.Process]:
    """The worker node's raylet (its own temp dir) and everything it started: killing them is the node dying."""
    raylets = [p for p in _processes_under(root / "worker") if "raylet" in " ".join(p.cmdline()[:1])]
    assert raylets, "no raylet of the worker node"
    return [q for raylet in raylets for q in [raylet, *raylet.children(recursive=True)]]


def test_two_node_cluster_renders_on_both_and_survives_losing_the_worker_node(two_nodes, pg_url, tmp_path):
    import ray
    from ray import serve

    from serving.app import build
    from serving.cluster import check_nodes
    from serving.settings import load_settings

    state = tmp_path / "state"
    state.mkdir()
    keys = write_keys(tmp_path / "keys.yaml")
    args = {"state_dir": str(state), "keys_file": str(tmp_path / "keys.yaml"), "input_roots": [str(SAMPLES)],
            "jobs_db": pg_url, "jobs": {"chunk_frames": 8, "overlap_frames": 2, "poll_s": 0.5, "max_parallel_chunks": 2}}
    tiny = {"ray_actor_options": {"num_cpus": 0.02}}
    deployments = {"Gateway": tiny, "JobManager": tiny, "Segment": tiny, "Restyle": tiny, "Face": tiny,
                   "ChunkWorker": {"num_replicas": 2, "max_replicas_per_node": 1, "ray_actor_options": {"num_cpus": 0.5}}}
    ray.init(address=two_nodes["address"], namespace="vfx-cluster-test", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    try:
        nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
        worker_node = next(i for i, n in nodes.items() if "vfx_worker_node" in n["Resources"])
        assert len(nodes) == 2

        with pytest.raises(VfxError, match="SQLite .* 2 nodes; .* PostgreSQL"):
            check_nodes(load_settings({**args, "jobs_db": None}))
        with pytest.raises(VfxError, match="has no .*not-mounted"):
            check_nodes(load_settings({**args, "input_roots": [str(tmp_path / "not-mounted")]}))
        views = check_nodes(load_settings(args))
        assert sorted(v["node"] for v in views) == sorted(nodes) and all(v["sees_state_dir"] for v in views)

        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(build({**args, "deployments": deployments}), name="vfx", route_prefix="/")
        app = ServeApp(url=f"http://127.0.0.1:{port}", keys=keys, state_dir=state)
        wait_healthy(app)
        with app.client() as client:
            job_id = submit(client, NIGHT, frames="0-63", path=SAMPLES / "vtest.avi").json()["id"]
            job_dir = next((state / "jobs").iterdir())
            deadline = time.monotonic() + 240
            while worker_node not in _chunk_nodes(job_dir) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert worker_node in _chunk_nodes(job_dir), "no chunk was rendered on the worker node"
            _kill(_worker_node_processes(two_nodes["root"]))
            job = wait_job(client, job_id, timeout_s=300)
            assert job["state"] == "done", job
            assert job["frames"]["done"] == 64 and job["chunks"]["total"] == 8
            (tmp_path / "out.mp4").write_bytes(client.get(f"/v1/jobs/{job_id}/output").content)
        recorded = _chunk_nodes(job_dir)
        assert set(recorded) == set(nodes), recorded  # chunks rendered on both nodes
        assert sorted(i for chunks in recorded.values() for i in chunks) == list(range(8))
        assert not any(n["Alive"] for n in ray.nodes() if n["NodeID"] == worker_node)
        with av.open(str(tmp_path / "out.mp4")) as container:
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        assert len(frames) == 64 and not any(np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    finally:
        serve.shutdown()
        ray.shutdown()


def _chunk_nodes(job_dir: Path) -> dict[str, list[int]]:
    """node id -> the chunks it rendered, from the records the ChunkWorkers write beside their chunks."""
    nodes: dict[str, list[int]] = {}
    for record in sorted((job_dir / "chunks").glob("chunk-*.node.json")) if (job_dir / "chunks").is_dir() else []:
        try:
            node = json.loads(record.read_text())["node"]
        except (OSError, ValueError):
            continue
        nodes.setdefault(node, []).append(int(record.name.split("-")[1].split(".")[0]))
    return nodes
