"""Shared test helpers."""
import os
import tempfile
from pathlib import Path

# Keys, consent database and provenance certificates of a test run never touch the user's ~/.vfx.
os.environ.setdefault("VFX_HOME", tempfile.mkdtemp(prefix="vfx-test-home-"))

_REPO = Path(__file__).resolve().parents[1]
# CI has the shared footage beside the clone; a fresh machine gets the same files from
# Debian's opencv-doc into ./samples (make samples/vtest.avi).
SAMPLES = next((p for p in (Path(os.environ.get("VFX_SAMPLES", "/nonexistent")), _REPO.parent / "shared" / "samples",
                            _REPO / "samples") if (p / "vtest.avi").is_file()), _REPO.parent / "shared" / "samples")
