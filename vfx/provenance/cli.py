"""``vfx provenance verify OUTPUT --trust ROOT.pem``: what was done to an output, under which grants,
and whether it was signed by someone you trust; ``vfx provenance keygen DIR`` makes a signing identity."""
from __future__ import annotations

from pathlib import Path

import typer

from vfx.errors import VfxError
from vfx.provenance.certificates import make_signing_keys, trusted_root_path
from vfx.provenance.manifest import verify_provenance

app = typer.Typer(help="Provenance of vfx outputs: signed sidecar manifests and C2PA.", no_args_is_help=True)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VfxError(f"{what} {path}: {exc.strerror}") from exc


@app.command()
def verify(output: Path,
           trust: Path = typer.Option(None, "--trust", "--trust-anchors", help="PEM root certificate(s) to trust "
                                      "(default: this machine's signing root, VFX_SIGNING_KEYS or VFX_HOME/keys)"),
           signer: Path = typer.Option(None, "--signer", help="PEM certificate or public key of the one signer to trust")) -> None:
    """Report the steps, backends, inputs and grants recorded for OUTPUT and check them against pinned trust."""
    if trust is None and signer is None:
        trust = trusted_root_path()
        if trust is not None:
            typer.echo(f"trust    {trust} (this machine's root; pass --trust ROOT.pem to pin another)")
    report = verify_provenance(output, _read(trust, "--trust"), _read(signer, "--signer"))
    manifest = report.manifest or {}
    if manifest:
        typer.echo(f"output   {output}  sha256 {manifest['output']['sha256']}")
        for item in manifest.get("inputs", []):
            typer.echo(f"input    {item['path']}  sha256 {item['sha256']}")
        typer.echo(f"steps    {', '.join(step.get('name', '?') for step in manifest.get('steps', [])) or '-'}")
        typer.echo(f"backends {', '.join(f'{k}={v}' for k, v in sorted(manifest.get('backends', {}).items())) or '-'}")
        typer.echo(f"grants   {', '.join(manifest.get('grant_ids', [])) or 'none'}")
        for edit in manifest.get("consent", []):
            runs = ", ".join(f"{r['first']}-{r['last']}" for r in edit.get("ranges", []))
            typer.echo(f"consent  {edit['operation']} of {edit['subject']} under {edit['grant_id']}: frames {runs}")
        typer.echo(f"ledger   {manifest.get('ledger_head') or '-'}")
        typer.echo(f"signed   by {report.signer_name} (key {report.signer_key}) at {manifest.get('created_at')}")
    if report.c2pa_state is not None:
        typer.echo(f"c2pa     {report.c2pa_state}: {' -> '.join(report.c2pa_actions)}")
    if not report.ok:
        raise VfxError(f"{output}: provenance does not verify: " + " | ".join(report.problems))
    typer.echo("provenance ok")


@app.command()
def keygen(directory: Path = typer.Argument(..., help="new directory for the root and signer (a deployment's secret)")) -> None:
    """Make a signing root and signer certificate; mount c2pa-signer.pem/.key and c2pa-ca.pem as the
    deployment's secret (VFX_SIGNING_KEYS) and give c2pa-ca.pem to whoever verifies outputs."""
    root = make_signing_keys(directory)
    typer.echo(f"root to pin: {root}")
    typer.echo(f"keep {directory / 'c2pa-ca.key'} offline; for Kubernetes:\n  kubectl create secret generic vfx-signing "
               f"--from-file={directory / 'c2pa-signer.pem'} --from-file={directory / 'c2pa-signer.key'} "
               f"--from-file={root}")
