"""``vfx consent ...``: keys, subjects, grants, revocations and the ledger."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import typer

from vfx.consent.grants import issue_grant, list_grants, parse_operations, parse_when, revoke_grant
from vfx.consent.home import trust_key, trusted_keys
from vfx.consent.keys import generate_key, key_id, load_private_key
from vfx.consent.schema import SubjectRow
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import collect_embeddings, enroll, load_subjects
from vfx.consent.verify import verify_store
from vfx.errors import VfxError
from vfx.face.identity_backends import arcface_licence, identity_backend

app = typer.Typer(help="Consent: enrol subjects, sign and revoke grants, verify the ledger.", no_args_is_help=True)

DbOption = typer.Option(None, "--db", envvar="VFX_CONSENT_DB", help="SQLAlchemy URL (default: sqlite in VFX_HOME)")


@app.command()
def keygen(out: Path = typer.Argument(..., help="private key file to create; the public key goes to OUT.pub"),
           trust: bool = typer.Option(False, "--trust", help="also add the public key to the trusted keys")) -> None:
    """Create a rights holder's Ed25519 key pair."""
    pub_path, kid = generate_key(out)
    typer.echo(f"{kid}  private {out} (keep it secret)  public {pub_path}")
    if trust:
        trust_key(str(pub_path))
        typer.echo(f"trusted {kid}")


@app.command()
def trust(public_key: str = typer.Argument(..., help="a .pub file or the base64 public key")) -> None:
    """Trust a rights holder's public key: grants it signs are accepted by the gate."""
    kid, path = trust_key(public_key)
    typer.echo(f"trusted {kid} ({path})")


@app.command("enroll")
def enroll_command(name: str, source: Path = typer.Option(..., "--from", help="image, folder of images, or video"),
                   frames: str = typer.Option(None, "--frames", help="frame range of a video, e.g. 30-90"),
                   step: int = typer.Option(1, "--step", help="use every Nth image/frame"),
                   identity: str = typer.Option("dlib", "--identity", help="identity backend: dlib | arcface "
                                                "(arcface needs the arcface_r100 model in the store)"),
                   allow_noncommercial: bool = typer.Option(False, "--allow-noncommercial",
                                                            help="accept an identity model licensed for non-commercial use only"),
                   db: str = DbOption) -> None:
    """Enrol a subject from reference images or a clip (largest face per frame)."""
    if identity == "arcface":
        licence, commercial = arcface_licence()
        typer.echo(f"identity model arcface_r100 licence: {licence} (commercial use: {'yes' if commercial else 'no'})")
    backend = identity_backend(identity, allow_noncommercial)
    result = collect_embeddings(source, frames, step, backend=backend)
    store = ConsentStore(db)
    entry = enroll(store, name, result.embeddings, f"{source}" + (f" frames {frames}" if frames else ""), backend.stored)
    typer.echo(f"enrolled {name} with {backend.stored}: {len(result.embeddings)} reference faces from {result.frames_seen} frames "
               f"({result.frames_without_face} without a face, {result.outliers_dropped} other faces dropped); ledger entry {entry.seq}")


@app.command()
def grant(subject: str, project: str = typer.Option(..., "--project"), ops: str = typer.Option(..., "--ops"),
          until: str = typer.Option(..., "--until", help="last valid day (YYYY-MM-DD) or ISO datetime"),
          valid_from: str = typer.Option(None, "--from", help="first valid day; default now"),
          key: Path = typer.Option(..., "--key", help="the rights holder's private key"), db: str = DbOption) -> None:
    """Sign a grant of consent for SUBJECT in a project for some operations."""
    start = parse_when(valid_from, end_of_day=False) if valid_from else datetime.now(timezone.utc)
    issued = issue_grant(ConsentStore(db), load_private_key(key), subject, project, parse_operations(ops),
                         start, parse_when(until, end_of_day=True))
    if key_id(issued.issuer) not in trusted_keys():
        typer.echo(f"warning: key {key_id(issued.issuer)} is not trusted; the gate will refuse this grant "
                   "until you run: vfx consent trust KEY.pub", err=True)
    typer.echo(issued.grant_id)


@app.command()
def revoke(grant_id: str, key: Path = typer.Option(..., "--key"), reason: str = typer.Option("", "--reason"),
           db: str = DbOption) -> None:
    """Revoke a grant (signed by its issuer or a trusted rights holder)."""
    document = revoke_grant(ConsentStore(db), load_private_key(key), grant_id, reason, trusted_keys())
    typer.echo(f"revoked {grant_id} at {document['revoked_at']}")


@app.command("list")
def list_command(db: str = DbOption) -> None:
    """Enrolled subjects and their grants."""
    store = ConsentStore(db)
    with store.session() as session:
        subjects = load_subjects(session)
    trusted = trusted_keys()
    now = datetime.now(timezone.utc)
    for subject in subjects:
        typer.echo(f"{subject.name}  ({len(subject.embeddings)} reference faces, {subject.backend})")
        for item, revocation in list_grants(store, subject=subject.name):
            state = "revoked" if revocation else ("expired" if now > item.valid_until else "active")
            trust_note = "" if key_id(item.issuer) in trusted else ", untrusted key"
            typer.echo(f"  {item.grant_id}  {item.project}  {','.join(item.operations)}  "
                       f"{item.document['valid_from']} .. {item.document['valid_until']}  {state}{trust_note}")
    if not subjects:
        typer.echo("no subjects enrolled")


@app.command()
def show(name_or_grant: str, db: str = DbOption) -> None:
    """Show one subject or grant as JSON."""
    store = ConsentStore(db)
    with store.session() as session:
        row = session.get(SubjectRow, name_or_grant)
        subject = None if row is None else {"subject": row.name, "enrolled_at": row.enrolled_at, "digest": row.digest,
                                             "references": row.count, "source": row.source, "backend": row.backend}
    if subject is not None:
        subject["grants"] = [g.grant_id for g, _ in list_grants(store, subject=name_or_grant)]
        typer.echo(json.dumps(subject, indent=2))
        return
    for item, revocation in list_grants(store):
        if item.grant_id == name_or_grant:
            typer.echo(json.dumps({"grant": item.document, "signature": item.signature, "revocation": revocation}, indent=2))
            return
    raise VfxError(f"no subject or grant named {name_or_grant!r}")


@app.command()
def verify(db: str = DbOption) -> None:
    """Check the whole ledger chain and every signature; name the first broken entry."""
    report = verify_store(ConsentStore(db))
    if not report.ok:
        raise VfxError(f"ledger verification failed ({len(report.problems)} problem(s)): " + " | ".join(report.problems))
    typer.echo(f"ledger ok: {report.entries} entries, head {report.head}")
