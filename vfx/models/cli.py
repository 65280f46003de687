"""``vfx models list|fetch|import|verify``."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vfx.errors import VfxError
from vfx.models.store import ModelStore

app = typer.Typer(help="The verified local model store ($VFX_MODEL_DIR, default ~/.vfx/models).", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Every model in the manifest: present, missing, corrupt or unverified, and its licence."""
    store = ModelStore()
    table = Table(title=f"models in {store.root}")
    for column in ("name", "kind", "state", "licence", "commercial", "detail"):
        table.add_column(column)
    for name, entry in store.manifest.models.items():
        status = store.status(name)
        table.add_row(name, entry.kind, status.state, entry.licence, "yes" if entry.commercial_use else "no", status.detail)
    Console(width=160).print(table)


@app.command()
def fetch(name: str) -> None:
    """Download NAME from its source (needs internet), verify sha256, install atomically."""
    folder = ModelStore().fetch(name)
    typer.echo(f"{name}: present in {folder}")


@app.command("import")
def import_model(name: str, path: Path) -> None:
    """Copy NAME in from PATH (a checkpoint file or a folder with the model's files) after checking its hash."""
    folder = ModelStore().import_from(name, path)
    typer.echo(f"{name}: imported into {folder}")


@app.command()
def verify(name: str = typer.Argument(None, help="one model; default: every model that is in the store")) -> None:
    """Re-hash the files of models in the store; fails if any is corrupt or unverified."""
    store = ModelStore()
    names = [name] if name else [n for n in store.manifest.models if store.present(n)]
    if not names:
        typer.echo(f"no models in {store.root}; vfx models list shows what can be fetched")
    bad = []
    for model in names:
        status = store.status(model, rehash=True)
        typer.echo(f"{model}: {status.state}{' (' + status.detail + ')' if status.detail else ''}")
        if not status.ok:
            bad.append(model)
    if bad:
        raise VfxError(f"{len(bad)} model(s) failed verification: {', '.join(bad)}")
