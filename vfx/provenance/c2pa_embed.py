"""Embedding and reading C2PA manifests in MP4/MOV outputs (c2pa-python 0.38.1)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vfx.errors import VfxError
from vfx.provenance.certificates import SigningMaterial

C2PA_FORMATS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime"}
TRAINED_COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


PARENT_ID = "vfx:source"
PROVENANCE_LABEL = "org.vfx.provenance"
CONSENT_LABEL = "org.vfx.consent"  # no standard likeness-consent assertion exists yet


def c2pa_manifest(title: str, steps: list[dict], grant_ids: list[str], consent: list[dict] | None = None) -> dict[str, Any]:
    edited = {"action": "c2pa.edited", "digitalSourceType": TRAINED_COMPOSITE,
              "softwareAgent": {"name": "vfx"},
              "parameters": {"description": ", ".join(step.get("name", "?") for step in steps) or "vfx pipeline",
                             "vfx.steps": [step.get("name", "?") for step in steps], "vfx.grant_ids": grant_ids}}
    actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": [PARENT_ID]}}, edited]
    actions += [likeness_action(edit) for edit in consent or []]
    assertions = [{"label": "c2pa.actions.v2", "data": {"actions": actions}},
                  {"label": PROVENANCE_LABEL, "data": {"grant_ids": grant_ids, "steps": steps}}]
    if consent:
        assertions.append({"label": CONSENT_LABEL, "data": {"version": 1, "edits": consent}})
    return {"claim_generator_info": [{"name": "vfx", "version": "0.1.0"}], "title": title, "format": "video/mp4",
            "assertions": assertions}


def likeness_action(edit: dict[str, Any]) -> dict[str, Any]:
    """One consented likeness edit as a C2PA action whose ``changes`` are regions of interest: each
    run of frames it touched and the box (pixels) that held the face across that run. (Runs are
    flat objects, not lists: c2pa turns short integer lists into CBOR byte strings.)"""
    regions = [{"region": [{"type": "frame", "frame": {"start": run["first"], "end": run["last"]}},
                           {"type": "spatial", "shape": {"type": "rectangle", "unit": "pixel",
                                                         "origin": {"x": run["x"], "y": run["y"]},
                                                         "width": run["width"], "height": run["height"]}}],
                "description": f"{edit['operation']} of {edit['subject']}, frames {run['first']}-{run['last']}"}
               for run in edit["ranges"]]
    return {"action": "c2pa.edited", "digitalSourceType": TRAINED_COMPOSITE, "softwareAgent": {"name": "vfx"},
            "description": f"{edit['operation']} of consented subject {edit['subject']} under grant {edit['grant_id']}",
            "parameters": {"vfx.grant_id": edit["grant_id"], "vfx.operation": edit["operation"]},
            "changes": regions}


def _add_parent(builder: Any, source: Path | None, edited_output: Path) -> None:
    """The opened ingredient: the source file when C2PA can read its format, else the output as rendered."""
    import c2pa

    readable = source is not None and _mime(source) in c2pa.Builder.get_supported_mime_types()
    for parent in ([source] if readable else []) + [edited_output]:
        ingredient = {"title": parent.name, "relationship": "parentOf", "instance_id": PARENT_ID}
        try:
            with open(parent, "rb") as stream:
                builder.add_ingredient(ingredient, _mime(parent), stream)
            return
        except c2pa.C2paError:
            if parent == edited_output:
                raise
            # a damaged source C2PA cannot parse: its sha256 is still in the signed sidecar


def _mime(path: Path) -> str:
    import mimetypes

    return C2PA_FORMATS.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def embed_c2pa(path: Path, manifest: dict[str, Any], material: SigningMaterial, source: Path | None = None) -> None:
    """Rewrite ``path`` with a signed C2PA manifest, atomically (temp file beside it, then rename)."""
    import c2pa

    mime = C2PA_FORMATS.get(path.suffix.lower())
    if mime is None:
        raise VfxError(f"{path}: C2PA embedding supports {', '.join(C2PA_FORMATS)}")
    manifest = {**manifest, "format": mime}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.c2pa-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, material.c2pa_chain_pem, material.c2pa_key_pem, None)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
            _add_parent(builder, source, path)
            with open(path, "rb") as source, open(tmp, "wb") as dest:
                builder.sign(signer, mime, source, dest)
        os.chmod(tmp, path.stat().st_mode)  # mkstemp made it 0600
        os.replace(tmp, path)
    except c2pa.C2paError as exc:
        raise VfxError(f"{path}: C2PA signing failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def read_c2pa(path: Path, trust_anchors_pem: bytes | None = None) -> dict[str, Any] | None:
    """The manifest store as JSON (validated, against ``trust_anchors_pem`` if given), or None if absent."""
    import c2pa

    mime = C2PA_FORMATS.get(path.suffix.lower())
    if mime is None:
        return None
    try:
        context = None
        if trust_anchors_pem is not None:
            settings = c2pa.Settings.from_json(json.dumps({"trust": {"trust_anchors": trust_anchors_pem.decode()}}))
            context = c2pa.Context(settings)
        with open(path, "rb") as stream, c2pa.Reader(mime, stream, context=context) as reader:
            return json.loads(reader.json())
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc) or "not found" in str(exc).lower():
            return None
        raise VfxError(f"{path}: C2PA manifest unreadable: {exc}") from exc


def c2pa_problems(store: dict[str, Any], trusted: bool) -> list[str]:
    """Validation failures of the active manifest. Without trust anchors, an untrusted (local) signing
    certificate is expected and not a failure; every other failure code is."""
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = results.get("failure", [])
    if not results:
        failures = store.get("validation_status", [])
    ignored = set() if trusted else {"signingCredential.untrusted"}
    return [f"C2PA {item.get('code')}: {item.get('explanation', '')}".strip() for item in failures
            if item.get("code") not in ignored]
