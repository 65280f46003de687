"""Provenance: a signed sidecar manifest for every output and an embedded C2PA manifest in MP4/MOV."""
from vfx.provenance.certificates import SigningMaterial, signing_material
from vfx.provenance.manifest import ProvenanceReport, sidecar_path, verify_provenance, write_provenance

__all__ = ["SigningMaterial", "signing_material", "ProvenanceReport", "sidecar_path", "verify_provenance", "write_provenance"]
