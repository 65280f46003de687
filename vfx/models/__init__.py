"""Model manifest and verified local store: fetch, import, verify, and pick models for ``auto``."""
from vfx.models.manifest import Manifest, ModelEntry, ModelFile, licence_allows, load_manifest
from vfx.models.store import STORE_ENV, ModelStore, Status, choose_model, default_store_dir, sha256_file

__all__ = ["Manifest", "ModelEntry", "ModelFile", "load_manifest", "licence_allows", "ModelStore", "Status", "STORE_ENV",
           "choose_model", "default_store_dir", "sha256_file"]
