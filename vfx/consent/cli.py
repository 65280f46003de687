"""``vfx consent ...``: keys, subjects, grants, revocations and the ledger."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import typer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vfx.consent import documents
from vfx.consent.grants import grant_subject, list_grants, parse_operations, parse_when, subject_digest
from vfx.consent.home import trust_key, trusted_keys
from vfx.consent.keys import generate_key, key_id, load_private_key, load_public_key_text, write_text_atomic
from vfx.consent.records import read_state, record_authority, record_grant, record_revocation
from vfx.consent.state import view_of
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import collect_embeddings, sign_enrolment, submit_enrolment
from vfx.consent.uploads import enrolment_upload, record_upload
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
    """Trust a rights holder's public key: the gate accepts grants it signs for subjects it is an authority of."""
    kid, path = trust_key(public_key)
    typer.echo(f"trusted {kid} ({path})")


KeyOption = typer.Option(None, "--key", help="the rights holder's private key (stays on their machine)")
OutOption = typer.Option(None, "-o", "--out", help="only sign: write the signed document here for upload "
                         "(POST /v1/consent/... or vfx consent submit) instead of recording it")


def _key(key: Path | None, what: str) -> Ed25519PrivateKey:
    if key is None:
        raise VfxError(f"{what} must be signed by a rights holder: pass --key HOLDER.key")
    return load_private_key(key)


def _write_upload(out: Path, upload: dict) -> None:
    write_text_atomic(out, json.dumps(upload, indent=2, sort_keys=True) + "\n")
    typer.echo(f"signed {upload['document']['type']} written to {out}")


@app.command("enroll")
def enroll_command(name: str, source: Path = typer.Option(..., "--from", help="image, folder of images, or video"),
                   frames: str = typer.Option(None, "--frames", help="frame range of a video, e.g. 30-90"),
                   step: int = typer.Option(1, "--step", help="use every Nth image/frame"),
                   identity: str = typer.Option("dlib", "--identity", help="identity backend: dlib | arcface "
                                                "(arcface needs the arcface_r100 model in the store)"),
                   allow_noncommercial: bool = typer.Option(False, "--allow-noncommercial",
                                                            help="accept an identity model licensed for non-commercial use only"),
                   key: Path = KeyOption, out: Path = OutOption, db: str = DbOption) -> None:
    """Enrol a subject from reference images or a clip (largest face per frame), signed by the rights
    holder's key, which becomes the subject's authority."""
    holder = _key(key, f"enrolment of {name!r}")
    if identity == "arcface":
        licence, commercial = arcface_licence()
        typer.echo(f"identity model arcface_r100 licence: {licence} (commercial use: {'yes' if commercial else 'no'})")
    backend = identity_backend(identity, allow_noncommercial)
    result = collect_embeddings(source, frames, step, backend=backend)
    signed = sign_enrolment(holder, name, result.embeddings, f"{source.name}" + (f" frames {frames}" if frames else ""),
                            backend.stored)
    found = (f"{len(result.embeddings)} reference faces from {result.frames_seen} frames ({result.frames_without_face} "
             f"without a face, {result.outliers_dropped} other faces dropped)")
    if out is not None:
        _write_upload(out, enrolment_upload(signed, result.embeddings))
        typer.echo(found)
        return
    entry = submit_enrolment(ConsentStore(db), signed, result.embeddings)
    typer.echo(f"enrolled {name} with {backend.stored}: {found}; authority {key_id(signed.signer)}; ledger entry {entry.seq}")


@app.command()
def authorize(name: str, key: Path = KeyOption,
              add: str = typer.Option(None, "--add", help="public key (.pub or base64) to make an authority of NAME"),
              remove: str = typer.Option(None, "--remove", help="public key to remove from NAME's authorities"),
              out: Path = OutOption, db: str = DbOption) -> None:
    """Delegate: an authority of NAME adds or removes another rights holder's key."""
    if (add is None) == (remove is None):
        raise VfxError("give exactly one of --add KEY.pub or --remove KEY.pub")
    signed = documents.authority(_key(key, "an authority change"), name, "add" if add else "remove", add or remove)
    if out is not None:
        return _write_upload(out, signed.to_json())
    entry = record_authority(ConsentStore(db), signed)
    typer.echo(f"{signed.document['action']} {key_id(signed.document['key'])} as authority of {name}; ledger entry {entry.seq}")


@app.command()
def grant(subject: str, project: str = typer.Option(..., "--project"), ops: str = typer.Option(..., "--ops"),
          until: str = typer.Option(..., "--until", help="last valid day (YYYY-MM-DD) or ISO datetime"),
          valid_from: str = typer.Option(None, "--from", help="first valid day; default now"),
          digest: str = typer.Option(None, "--digest", help="the subject's reference digest (vfx consent show NAME); "
                                     "default: read from the database"),
          key: Path = KeyOption, out: Path = OutOption, db: str = DbOption) -> None:
    """Sign a grant of consent for SUBJECT in a project for some operations (the key must be SUBJECT's authority)."""
    holder = _key(key, "a grant")
    start = parse_when(valid_from, end_of_day=False) if valid_from else datetime.now(timezone.utc)
    signed = documents.grant(holder, subject, digest or subject_digest(ConsentStore(db), subject), project,
                             parse_operations(ops), start, parse_when(until, end_of_day=True))
    if out is not None:
        return _write_upload(out, signed.to_json())
    issued = record_grant(ConsentStore(db), signed)
    if key_id(issued.issuer) not in trusted_keys():
        typer.echo(f"warning: key {key_id(issued.issuer)} is not trusted; the gate will refuse this grant "
                   "until you run: vfx consent trust KEY.pub", err=True)
    typer.echo(issued.grant_id)


@app.command("sign-grant")
def sign_grant(subject: str, project: str = typer.Option(..., "--project"), ops: str = typer.Option(..., "--ops"),
               until: str = typer.Option(..., "--until"), valid_from: str = typer.Option(None, "--from"),
               digest: str = typer.Option(None, "--digest"), key: Path = KeyOption,
               out: Path = typer.Option(..., "-o", "--out"), db: str = DbOption) -> None:
    """Same as ``grant -o FILE``: sign a grant on the holder's machine for upload."""
    grant(subject, project, ops, until, valid_from, digest, key, out, db)


@app.command()
def revoke(grant_id: str, key: Path = KeyOption, reason: str = typer.Option("", "--reason"),
           subject: str = typer.Option(None, "--subject", help="the grant's subject; default: read from the database"),
           out: Path = OutOption, db: str = DbOption) -> None:
    """Revoke a grant (signed by an authority of its subject, or its issuer)."""
    signed = documents.revocation(_key(key, "a revocation"), grant_id, subject or grant_subject(ConsentStore(db), grant_id), reason)
    if out is not None:
        return _write_upload(out, signed.to_json())
    document = record_revocation(ConsentStore(db), signed)
    typer.echo(f"revoked {grant_id} at {document['revoked_at']}")


@app.command()
def submit(upload: Path = typer.Argument(..., help="a signed document written with -o"), db: str = DbOption) -> None:
    """Record a document a rights holder signed on their side (enrolment, authority change, grant, revocation)."""
    try:
        data = json.loads(upload.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VfxError(f"{upload}: not a readable JSON upload ({exc})") from exc
    typer.echo(record_upload(ConsentStore(db), data))


@app.command("list")
def list_command(holder: str = typer.Option(None, "--holder", help="only subjects this public key (.pub) speaks for"),
                 db: str = DbOption) -> None:
    """Enrolled subjects with their authorities and grants."""
    store = ConsentStore(db)
    state = read_state(store)
    names = state.subjects_of(load_public_key_text(holder)) if holder else sorted(state.subjects)
    trusted = trusted_keys()
    now = datetime.now(timezone.utc)
    for name in names:
        record = state.subjects[name]
        typer.echo(f"{name}  ({record.enrolment.document.get('references')} reference faces, {record.backend}; "
                   f"authorities {', '.join(key_id(k) for k in record.authorities)})")
        for item, revocation in list_grants(store, subject=name):
            state_text = "revoked" if revocation else ("expired" if now > item.valid_until else "active")
            problem = state.grants[item.grant_id].problem
            notes = ("" if key_id(item.issuer) in trusted else ", untrusted key") + (", not by an authority" if problem else "")
            typer.echo(f"  {item.grant_id}  {item.project}  {','.join(item.operations)}  "
                       f"{item.document['valid_from']} .. {item.document['valid_until']}  {state_text}{notes}")
    if not names:
        typer.echo("no subjects enrolled" + (" for this holder" if holder else ""))


@app.command()
def show(name_or_grant: str, db: str = DbOption) -> None:
    """Show one subject (with its reference digest and authorities) or grant as JSON."""
    store = ConsentStore(db)
    state = read_state(store)
    if name_or_grant in state.subjects:
        subject = view_of(state.subjects[name_or_grant])
        subject["grants"] = [g.grant_id for g, _ in list_grants(store, subject=name_or_grant)]
        typer.echo(json.dumps(subject, indent=2))
        return
    record = state.grants.get(name_or_grant)
    if record is None:
        raise VfxError(f"no subject or grant named {name_or_grant!r}")
    revocation = state.revocations.get(name_or_grant)
    typer.echo(json.dumps({"grant": record.grant.document, "signature": record.grant.signature,
                           "revocation": revocation[0].document if revocation else None,
                           "problem": record.problem or None}, indent=2))


@app.command()
def verify(db: str = DbOption) -> None:
    """Check the ledger chain, every signed document against its subject's authorities, and the tables
    against the ledger; name every broken entry."""
    report = verify_store(ConsentStore(db))
    if not report.ok:
        raise VfxError(f"ledger verification failed ({len(report.problems)} problem(s)): " + " | ".join(report.problems))
    typer.echo(f"ledger ok: {report.entries} entries, head {report.head}")
