"""``vfx serve`` (the app on an embedded single-node Ray) and ``vfx serve-key`` (API keys)."""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer
import yaml

from vfx.errors import VfxError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "serve.yaml"
APP_NAME = "vfx"


def read_serve_config(path: Path) -> dict[str, Any]:
    """The ``vfx`` application of a Serve config file: its args, deployment options and http options."""
    if not path.is_file():
        raise VfxError(f"{path}: serve config not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise VfxError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    apps = [a for a in data.get("applications", []) if a.get("name") == APP_NAME]
    if not apps:
        raise VfxError(f"{path}: no application named {APP_NAME!r}")
    application = apps[0]
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in application.get("deployments", [])}
    return {"args": dict(application.get("args") or {}), "deployments": deployments,
            "http": data.get("http_options") or {}}


def serve_command(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", help="a Serve config file (the same one `serve deploy` takes)"),
    host: str = typer.Option(None, "--host", help="default: the config's http_options.host"),
    port: int = typer.Option(None, "--port", help="default: the config's http_options.port"),
    num_cpus: int = typer.Option(None, "--num-cpus", help="CPUs the embedded Ray may schedule (default: all)"),
    state_dir: str = typer.Option(None, "--state-dir", help="job records, uploads and outputs"),
    keys_file: str = typer.Option(None, "--keys-file", help="API keys (create with `vfx serve-key`)"),
) -> None:
    """Run the service on this machine: an embedded single-node Ray with the vfx Serve application."""
    loaded = read_serve_config(config)
    args = loaded["args"]
    args.update({k: v for k, v in {"state_dir": state_dir, "keys_file": keys_file}.items() if v is not None})
    args["deployments"] = loaded["deployments"]
    try:
        import ray
        from ray import serve
    except ImportError:
        raise VfxError("vfx serve needs ray[serve]: pip install 'ray[serve]'") from None
    from serving.app import build
    from serving.auth import KeyRing
    from serving.settings import load_settings

    settings = load_settings({k: v for k, v in args.items() if k != "deployments"})
    if not KeyRing.load(settings.keys_file).entries:
        raise VfxError(f"{settings.keys_file}: no API keys; create one with `vfx serve-key NAME --role operator`")
    application = build(args)
    http = {"host": host or loaded["http"].get("host", "127.0.0.1"), "port": port or loaded["http"].get("port", 8000)}
    repo = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": repo}})
    try:
        from serving.cluster import check_nodes

        check_nodes(settings)  # one clear line if nodes do not share the state dir, or would share SQLite
        serve.start(http_options=http)
        serve.run(application, name=APP_NAME, route_prefix="/")
        typer.echo(f"vfx serving on http://{http['host']}:{http['port']}  (docs /docs, health /healthz); Ctrl-C stops")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_key_command(
    name: str = typer.Argument(..., help="who the key is for (a rights holder's name for rights_holder keys)"),
    role: str = typer.Option(..., "--role", help="operator | rights_holder | admin"),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config"),
    keys_file: str = typer.Option(None, "--keys-file", help="default: the config's keys_file"),
) -> None:
    """Create an API key; only its SHA-256 is stored, so the key is shown this once."""
    from serving.auth import Role, add_key

    try:
        chosen = Role(role)
    except ValueError:
        raise VfxError(f"--role {role!r}: choose operator, rights_holder or admin") from None
    path = keys_file or read_serve_config(config)["args"].get("keys_file", "~/.vfx/serve/keys.yaml")
    typer.echo(add_key(path, name, chosen))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("serve-key")(serve_key_command)
