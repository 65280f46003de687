"""Shared test helpers."""
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
