"""``vfx serve`` (the app on an embedded single-node Ray) and ``vfx serve-key`` (API keys)."""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import typer
import yaml

from vfx.errors import VfxError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "serve.yaml"
APP_NAME = "vfx"
STREAM_APP_NAME = "vfx-stream"  # its args are the vfx application's (a YAML alias in configs/serve.yaml)


def read_serve_config(path: Path) -> dict[str, Any]:
    """The ``vfx`` application's args, the deployment options of both applications, and the http options."""
    if not path.is_file():
        raise VfxError(f"{path}: serve config not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise VfxError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    apps = {a.get("name"): a for a in data.get("applications", [])}
    if APP_NAME not in apps:
        raise VfxError(f"{path}: no application named {APP_NAME!r}")
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"}
                   for name in (APP_NAME, STREAM_APP_NAME) for d in (apps.get(name) or {}).get("deployments", [])}
    return {"args": dict(apps[APP_NAME].get("args") or {}), "deployments": deployments,
            "http": data.get("http_options") or {}}


def serve_command(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", help="a Serve config file (the same one `serve deploy` takes)"),
    host: str = typer.Option(None, "--host", help="default: the config's http_options.host"),
    port: int = typer.Option(None, "--port", help="default: the config's http_options.port"),
    num_cpus: int = typer.Option(None, "--num-cpus", help="CPUs the embedded Ray may schedule (default: this machine's)"),
    state_dir: str = typer.Option(None, "--state-dir", help="job records, uploads and outputs"),
    keys_file: str = typer.Option(None, "--keys-file", help="API keys (create with `vfx serve-key`)"),
) -> None:
    """Run the service on this machine: an embedded single-node Ray with the vfx Serve application."""
    loaded = read_serve_config(config)
    args = loaded["args"]
    args.update({k: v for k, v in {"state_dir": state_dir, "keys_file": keys_file}.items() if v is not None})
    if num_cpus is not None and num_cpus < 1:
        raise VfxError(f"--num-cpus {num_cpus}: give at least 1")
    try:
        import ray
        from ray import serve
    except ImportError:
        raise VfxError("vfx serve needs ray[serve]: pip install 'ray[serve]'") from None
    from serving.app import deployment_options, run_applications
    from serving.auth import KeyRing
    from serving.cluster import check_nodes, ray_environment
    from serving.settings import load_settings
    from serving.sizing import fit_to_node

    settings = load_settings(args)
    if not KeyRing.load(settings.keys_file).entries:
        raise VfxError(f"{settings.keys_file}: no API keys; create one with `vfx serve-key NAME --role operator`")
    options = deployment_options(loaded["deployments"])
    http = {"host": host or loaded["http"].get("host", "127.0.0.1"), "port": port or loaded["http"].get("port", 8000)}
    url = f"http://{'127.0.0.1' if http['host'] in ('0.0.0.0', '::') else http['host']}:{http['port']}"
    _stop_on_signals()
    os.environ.update(ray_environment(settings))
    try:
        ray.init(num_cpus=num_cpus or _machine_cpus(), include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        _stop_on_signals()  # again: ray.init installs its own SIGTERM handler, which aborts the process
        options, factor = fit_to_node(options, ray.cluster_resources(), str(config))
        if factor < 1.0:
            typer.echo(f"vfx: the deployments ask more CPUs than the {ray.cluster_resources()['CPU']:g} this "
                       f"machine gives Ray (--num-cpus); every num_cpus is scaled by {factor:g}", err=True)
        check_nodes(settings)  # one line if nodes do not share the state dir, or would share SQLite
        serve.start(http_options=http)
        run_applications({**args, "deployments": options}, wait=False)
        _wait_until_ready(url)
        listening = " (all interfaces)" if http["host"] in ("0.0.0.0", "::") else ""
        typer.echo(f"vfx serving on {url}{listening}  (docs {url}/docs, health {url}/healthz); Ctrl-C stops", )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("vfx: stopping", err=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        _shutdown()


def _machine_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _stop_on_signals() -> None:
    """SIGTERM stops like Ctrl-C: through the ``finally`` that shuts Ray down, at any point of the start."""
    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _wait_until_ready(url: str) -> None:
    """Wait for /healthz to say ready; say once per new reason what it still waits for."""
    import httpx

    said: list[str] = []
    while True:
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            waiting = response.json().get("waiting", []) if response.headers.get("content-type", "").startswith(
                "application/json") else []
        except (httpx.HTTPError, ValueError):
            waiting = []
        if waiting and waiting != said:
            typer.echo(f"vfx: not ready yet, waiting for: {'; '.join(waiting)}", err=True)
            said = waiting
        time.sleep(1.0)


def _shutdown() -> None:
    """Stop Serve and Ray, then end whatever Ray left in this process group (its agents have
    outlived ray.shutdown() before). ray.init made this process the group's leader."""
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()
        _end_process_group()


def _end_process_group(grace_s: float = 10.0) -> None:
    import psutil

    me = os.getpid()
    group = os.getpgrp()
    if group != me:  # not our own group (Ray did not start here): only our own children are ours
        left = psutil.Process(me).children(recursive=True)
    else:
        left = [p for p in psutil.process_iter() if p.pid != me and _pgid(p.pid) == group]
    for process in left:
        _signal(process, signal.SIGTERM)
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for process in alive:
        _signal(process, signal.SIGKILL)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _signal(process: Any, sig: int) -> None:
    import psutil

    try:
        process.send_signal(sig)
    except psutil.Error:  # gone already, or not ours to signal
        logging.getLogger("vfx.serving").debug("could not signal %s", process.pid, exc_info=True)


def serve_key_command(
    name: str = typer.Argument(..., help="who the key is for (a rights holder's name for rights_holder keys)"),
    role: str = typer.Option(..., "--role", help="operator | rights_holder | admin"),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config"),
    keys_file: str = typer.Option(None, "--keys-file", help="default: the config's keys_file"),
    holder_key: str = typer.Option(None, "--holder-key", help="a rights holder's Ed25519 public key (.pub): "
                                   "the documents they sign and upload must carry it"),
) -> None:
    """Create an API key; only its SHA-256 is stored, so the key is shown this once."""
    from serving.auth import Role, add_key

    try:
        chosen = Role(role)
    except ValueError:
        raise VfxError(f"--role {role!r}: choose operator, rights_holder or admin") from None
    path = keys_file or read_serve_config(config)["args"].get("keys_file", "~/.vfx/serve/keys.yaml")
    if holder_key:
        from vfx.consent.keys import load_public_key_text

        holder_key = load_public_key_text(holder_key)
    typer.echo(add_key(path, name, chosen, holder_key))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("serve-key")(serve_key_command)
