"""The ``vfx`` command. Every user-facing failure is one line on stderr and a non-zero exit."""
from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import typer

from vfx.errors import VfxError

app = typer.Typer(
    help="vfx: mask a subject in real footage, restyle its surroundings, and make consent-gated face edits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

__import__("vfx.cli_run", fromlist=["register"]).register(app)
__import__("vfx.batch", fromlist=["register"]).register(app)
__import__("vfx.restyle.sheet", fromlist=["register"]).register(app)  # `vfx styles`
# Sub-commands owned by other modules are mounted here, one line each.
# (vfx.consent.cli, vfx.models.cli, vfx.provenance.cli)
app.add_typer(__import__("vfx.consent.cli", fromlist=["app"]).app, name="consent")
app.add_typer(__import__("vfx.provenance.cli", fromlist=["app"]).app, name="provenance")
app.add_typer(__import__("vfx.models.cli", fromlist=["app"]).app, name="models")


def add_plugin_commands(app: typer.Typer) -> None:
    """Commands of other installed packages (`vfx serve` comes from serving), from the
    ``vfx.commands`` entry points; a plugin that cannot be imported leaves vfx working without it."""
    for plugin in entry_points(group="vfx.commands"):
        try:
            plugin.load()(app)
        except ImportError as exc:
            logging.getLogger("vfx").warning("commands of %s are unavailable: %s", plugin.value, exc)


add_plugin_commands(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="vfx: %(message)s")
    try:
        app()
    except VfxError as exc:
        print(f"vfx: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("vfx: interrupted; no partial output was kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
