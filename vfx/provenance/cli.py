"""``vfx provenance verify OUTPUT``: what was done to an output, under which grants, and whether it holds."""
from __future__ import annotations

from pathlib import Path

import typer

from vfx.errors import VfxError
from vfx.provenance.certificates import keys_dir
from vfx.provenance.manifest import verify_provenance

app = typer.Typer(help="Provenance of vfx outputs: signed sidecar manifests and C2PA.", no_args_is_help=True)


@app.command()
def verify(output: Path,
           trust_anchors: Path = typer.Option(None, "--trust-anchors", help="PEM of C2PA roots to trust "
                                              "(default: this machine's VFX_HOME/keys/c2pa-ca.pem)")) -> None:
    """Report the steps, backends, inputs and grants recorded for OUTPUT, and check every signature."""
    anchors_path = trust_anchors or keys_dir() / "c2pa-ca.pem"
    anchors = anchors_path.read_bytes() if anchors_path.is_file() else None
    report = verify_provenance(output, anchors)
    manifest = report.manifest or {}
    if manifest:
        typer.echo(f"output   {output}  sha256 {manifest['output']['sha256']}")
        for item in manifest.get("inputs", []):
            typer.echo(f"input    {item['path']}  sha256 {item['sha256']}")
        typer.echo(f"steps    {', '.join(step.get('name', '?') for step in manifest.get('steps', [])) or '-'}")
        typer.echo(f"backends {', '.join(f'{k}={v}' for k, v in sorted(manifest.get('backends', {}).items())) or '-'}")
        typer.echo(f"grants   {', '.join(manifest.get('grant_ids', [])) or 'none'}")
        typer.echo(f"ledger   {manifest.get('ledger_head') or '-'}")
        typer.echo(f"signed   by {report.signer_key} at {manifest.get('created_at')}")
    if report.c2pa_state is not None:
        typer.echo(f"c2pa     {report.c2pa_state}: {' -> '.join(report.c2pa_actions)}")
    if not report.ok:
        raise VfxError(f"{output}: provenance does not verify: " + " | ".join(report.problems))
    typer.echo("provenance ok")
