"""The signed provenance sidecar (``OUTPUT.provenance.json``) and, for MP4/MOV, embedded C2PA."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfx.hashing import sha256_file
from vfx.consent.canonical import canonical_json
from vfx.consent.keys import key_id, load_private_key, public_key_text, sign_document, signature_is_valid
from vfx.consent.ledger import utc_now
from vfx.errors import VfxError
from vfx.provenance.c2pa_embed import C2PA_FORMATS, c2pa_manifest, c2pa_problems, embed_c2pa, read_c2pa
from vfx.provenance.certificates import SigningMaterial, signing_material

SIDECAR_SUFFIX = ".provenance.json"


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
                     signing_key: SigningMaterial | None = None, embed: bool = True) -> Path:
    """Sign what was done to a committed output; for MP4/MOV also embed a C2PA manifest first.

    The sidecar records the output's sha256 after embedding, so it covers the final bytes.
    """
    output = Path(output_path)
    if not output.is_file():
        raise VfxError(f"provenance: output {output} does not exist")
    material = signing_key or signing_material()
    records = [_input_record(path) for path in inputs]
    c2pa_embedded = embed and output.suffix.lower() in C2PA_FORMATS
    if c2pa_embedded:
        manifest = c2pa_manifest(output.name, steps, sorted(grant_ids))
        embed_c2pa(output, manifest, material, Path(inputs[0]) if inputs else None)
    key = load_private_key(material.ed25519_key)
    document = {
        "type": "vfx.provenance/1",
        "created_at": utc_now(),
        "output": {"name": output.name, "sha256": sha256_file(output)},
        "inputs": records,
        "steps": steps,
        "backends": backends,
        "model_hashes": model_hashes,
        "grant_ids": sorted(grant_ids),
        "ledger_head": ledger_head,
        "c2pa": c2pa_embedded,
        "signer": public_key_text(key.public_key()),
    }
    sidecar = {"manifest": document, "signature": sign_document(key, document)}
    target = sidecar_path(output)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8") + b"\n")
    tmp.replace(target)
    return target


@dataclass
class ProvenanceReport:
    output: str
    manifest: dict[str, Any] | None = None
    signer_key: str | None = None
    c2pa_state: str | None = None
    c2pa_actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_provenance(output_path: str | Path, trust_anchors_pem: bytes | None = None) -> ProvenanceReport:
    """Check the sidecar's signature, that it describes these exact bytes, and the embedded C2PA."""
    output = Path(output_path)
    report = ProvenanceReport(str(output))
    if not output.is_file():
        raise VfxError(f"{output}: no such file")
    sidecar = sidecar_path(output)
    if not sidecar.is_file():
        report.problems.append(f"no provenance sidecar {sidecar.name}")
    else:
        _check_sidecar(output, sidecar, report)
    if output.suffix.lower() in C2PA_FORMATS:
        _check_c2pa(output, report, trust_anchors_pem)
    return report


def _check_sidecar(output: Path, sidecar: Path, report: ProvenanceReport) -> None:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        document, signature = data["manifest"], data["signature"]
        signer = document["signer"]
    except (ValueError, KeyError, TypeError):
        report.problems.append(f"{sidecar.name} is not a vfx provenance manifest")
        return
    report.manifest, report.signer_key = document, key_id(signer)
    if not signature_is_valid(signer, document, signature):
        report.problems.append(f"{sidecar.name}: signature does not verify (manifest altered)")
    if document.get("output", {}).get("sha256") != sha256_file(output):
        report.problems.append(f"{output.name} changed after its manifest was signed (sha256 differs)")
    canonical_json(document)  # refuses NaN and other non-canonical content


def _check_c2pa(output: Path, report: ProvenanceReport, trust_anchors_pem: bytes | None) -> None:
    store = read_c2pa(output, trust_anchors_pem)
    if store is None:
        if report.manifest is None or report.manifest.get("c2pa"):
            report.problems.append(f"{output.name} has no embedded C2PA manifest")
        return
    report.c2pa_state = store.get("validation_state")
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            report.c2pa_actions = [a.get("action", "") for a in assertion.get("data", {}).get("actions", [])]
    report.problems += c2pa_problems(store, trusted=trust_anchors_pem is not None)
