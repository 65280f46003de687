"""The signed provenance sidecar (``OUTPUT.provenance.json``) and, for MP4/MOV, embedded C2PA."""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vfx.consent.canonical import canonical_json
from vfx.consent.ledger import utc_now
from vfx.durable import write_durably
from vfx.errors import VfxError
from vfx.hashing import sha256_file
from vfx.provenance.c2pa_embed import C2PA_FORMATS, PROVENANCE_LABEL, c2pa_manifest, c2pa_problems, embed_c2pa, read_c2pa
from vfx.provenance.certificates import SigningMaterial, signing_material

SIDECAR_SUFFIX = ".provenance.json"
SIDECAR_TYPE = "vfx.provenance/2"  # /2: signed with the X.509 signer (ES256), chain inside


def sidecar_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def _input_record(path: str) -> dict[str, str]:
    source = Path(path)
    if not source.is_file():
        raise VfxError(f"provenance: input {path} is not a file")
    return {"path": str(source), "sha256": sha256_file(source)}


def write_provenance(output_path: str | Path, inputs: list[str], steps: list[dict], backends: dict,
                     model_hashes: dict, grant_ids: list[str], ledger_head: str | None,
                     signing_key: SigningMaterial | None = None, embed: bool = True,
                     consent: list[dict] | None = None) -> Path:
    """Sign what was done to a committed output; for MP4/MOV also embed a C2PA manifest first.

    ``consent`` lists each likeness edit (grant, subject reference digest, operation, frames, region);
    it goes into the C2PA manifest as our own assertion and into the sidecar. The sidecar records
    the output's sha256 after embedding, so it covers the final bytes, and is signed by the same
    certificate as the C2PA manifest (its chain travels in the sidecar; verifiers pin the root).
    """
    output = Path(output_path)
    if not output.is_file():
        raise VfxError(f"provenance: output {output} does not exist")
    material = signing_key or signing_material()
    records = [_input_record(path) for path in inputs]
    c2pa_embedded = embed and output.suffix.lower() in C2PA_FORMATS
    if c2pa_embedded:
        manifest = c2pa_manifest(output.name, steps, sorted(grant_ids), consent or [])
        embed_c2pa(output, manifest, material, Path(inputs[0]) if inputs else None)
    document = {
        "type": SIDECAR_TYPE,
        "created_at": utc_now(),
        "output": {"name": output.name, "sha256": sha256_file(output)},
        "inputs": records,
        "steps": steps,
        "backends": backends,
        "model_hashes": model_hashes,
        "grant_ids": sorted(grant_ids),
        "consent": consent or [],
        "ledger_head": ledger_head,
        "c2pa": c2pa_embedded,
        "certificates": [c.public_bytes(serialization.Encoding.PEM).decode() for c in material.certificates],
    }
    sidecar = {"manifest": document, "signature": base64.b64encode(material.sign(canonical_json(document))).decode()}
    target = sidecar_path(output)
    write_durably(target, json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8") + b"\n")
    return target


@dataclass
class ProvenanceReport:
    output: str
    manifest: dict[str, Any] | None = None
    signer_key: str | None = None  # sha256 of the signer's public key (first 16 hex digits)
    signer_name: str | None = None
    c2pa_state: str | None = None
    c2pa_actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_provenance(output_path: str | Path, trust_anchors_pem: bytes | None = None,
                      signer_pem: bytes | None = None) -> ProvenanceReport:
    """Check the sidecar's signature against pinned trust (root certificates and/or the signer's own
    certificate or public key), that it describes these exact bytes, and the embedded C2PA."""
    output = Path(output_path)
    report = ProvenanceReport(str(output))
    if not output.is_file():
        raise VfxError(f"{output}: no such file")
    if trust_anchors_pem is None and signer_pem is None:
        report.problems.append("no trust pinned: pass the root certificate (--trust ROOT.pem) or the signer (--signer)")
    sidecar = sidecar_path(output)
    if not sidecar.is_file():
        report.problems.append(f"no provenance sidecar {sidecar.name}")
    else:
        _check_sidecar(output, sidecar, report, trust_anchors_pem, signer_pem)
    if output.suffix.lower() in C2PA_FORMATS:
        _check_c2pa(output, report, trust_anchors_pem)
    return report


def _check_sidecar(output: Path, sidecar: Path, report: ProvenanceReport, trust_anchors_pem: bytes | None,
                   signer_pem: bytes | None) -> None:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        document, signature = data["manifest"], base64.b64decode(data["signature"])
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in document["certificates"]]
        canonical = canonical_json(document)
    except (ValueError, KeyError, TypeError, AttributeError):
        report.problems.append(f"{sidecar.name} is not a vfx provenance manifest signed with a certificate")
        return
    report.manifest = document
    leaf = chain[0]
    report.signer_name, report.signer_key = leaf.subject.rfc4514_string(), key_fingerprint(leaf.public_key())
    try:
        leaf.public_key().verify(signature, canonical, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, TypeError, ValueError, AttributeError):
        report.problems.append(f"{sidecar.name}: signature does not verify (manifest altered after signing)")
    if signer_pem is not None:
        pinned = pinned_signer_key(signer_pem)
        if key_fingerprint(leaf.public_key()) != pinned:
            report.problems.append(f"signed by an unknown signer: {report.signer_name} (key {report.signer_key}), "
                                   f"not the pinned signer (key {pinned})")
    if trust_anchors_pem is not None:
        problem = chain_problem(chain, x509.load_pem_x509_certificates(trust_anchors_pem), str(document.get("created_at", "")))
        if problem:
            report.problems.append(f"signed by an unknown signer: {report.signer_name} (key {report.signer_key}) {problem}")
    signed_sha = document.get("output", {}).get("sha256")
    actual_sha = sha256_file(output)
    if signed_sha != actual_sha:
        report.problems.append(f"{output.name} changed after its manifest was signed: its bytes hash to sha256 "
                               f"{actual_sha[:16]}..., the signed manifest says {str(signed_sha)[:16]}...")


def key_fingerprint(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def pinned_signer_key(pem: bytes) -> str:
    """The fingerprint of a pinned signer given as its certificate or its public key (PEM)."""
    try:
        if b"BEGIN CERTIFICATE" in pem:
            return key_fingerprint(x509.load_pem_x509_certificate(pem).public_key())
        return key_fingerprint(serialization.load_pem_public_key(pem))
    except ValueError as exc:
        raise VfxError(f"--signer: not a PEM certificate or public key ({exc})") from exc


def chain_problem(chain: list[x509.Certificate], roots: list[x509.Certificate], when_text: str) -> str:
    """"" if ``chain`` (leaf first) leads to one of the pinned ``roots``, each link signed and valid
    at signing time; else why not."""
    if not roots:
        return "(no certificates in the trust file)"
    try:
        when = datetime.fromisoformat(when_text.replace("Z", "+00:00"))
    except ValueError:
        return "(the manifest has no valid signing time)"
    pinned = {root.fingerprint(hashes.SHA256()) for root in roots}
    for position, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return f"(certificate {cert.subject.rfc4514_string()} was not valid at {when_text})"
        if cert.fingerprint(hashes.SHA256()) in pinned:
            return ""
        if any(_issued_by(cert, root) for root in roots):
            return ""
        if position + 1 < len(chain) and not _issued_by(cert, chain[position + 1]):
            return f"(certificate {cert.subject.rfc4514_string()} is not issued by the next one in its chain)"
    names = "; ".join(root.subject.rfc4514_string() for root in roots)
    return f"is not issued by the trusted root ({names})"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _check_c2pa(output: Path, report: ProvenanceReport, trust_anchors_pem: bytes | None) -> None:
    store = read_c2pa(output, trust_anchors_pem)
    if store is None:
        said = report.manifest is not None and report.manifest.get("c2pa") is False
        report.problems.append(f"{output.name} has no embedded C2PA manifest (stripped"
                               + (", and the sidecar claims none was embedded)" if said else ")"))
        return
    report.c2pa_state = store.get("validation_state")
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    ours: dict[str, Any] = {}
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            report.c2pa_actions = [a.get("action", "") for a in assertion.get("data", {}).get("actions", [])]
        if assertion.get("label") == PROVENANCE_LABEL:
            ours = assertion.get("data", {})
    report.problems += c2pa_problems(store, trusted=trust_anchors_pem is not None)
    if report.manifest is not None:
        names = [[step.get("name") for step in item.get("steps", [])] for item in (ours, report.manifest)]
        if ours.get("grant_ids") != report.manifest.get("grant_ids"):
            report.problems.append("the C2PA manifest and the sidecar name different grants")
        if names[0] != names[1]:
            report.problems.append("the C2PA manifest and the sidecar list different steps")
