"""Shared test helpers."""
import os
import tempfile
from pathlib import Path

# Keys, consent database and provenance certificates of a test run never touch the user's ~/.vfx.
os.environ.setdefault("VFX_HOME", tempfile.mkdtemp(prefix="vfx-test-home-"))

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
