"""Provenance: signed sidecar and C2PA in an MP4 made from real footage, read back and validated."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from vfx.provenance import signing_material, verify_provenance, write_provenance
from vfx.provenance.c2pa_embed import TRAINED_COMPOSITE, read_c2pa

REPO = Path(__file__).resolve().parents[1]
MEGAMIND = REPO.parent / "shared" / "samples" / "Megamind.avi"


def small_mp4(path: Path, frames: int = 6) -> Path:
    """A few real Megamind frames, inverted (an 'edit'), encoded as H.264 MP4 with PyAV."""
    with av.open(str(MEGAMIND)) as source, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 360, 264, "yuv420p"
        for i, frame in enumerate(source.decode(video=0)):
            if i == frames:
                break
            rgb = 255 - frame.to_ndarray(format="rgb24")[::2, ::2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("VFX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def provenance_for(output: Path) -> Path:
    return write_provenance(output, [str(MEGAMIND)], [{"name": "rejuvenate", "strength": 0.5}],
                            {"face": "mediapipe", "identity": "dlib"}, {"dlib_resnet": "ab" * 32},
                            ["g-0123456789abcdef"], "cd" * 32)


def test_c2pa_manifest_in_mp4_reads_back_valid_and_trusted(tmp_path: Path, home: Path) -> None:
    output = small_mp4(tmp_path / "out.mp4")
    sidecar = provenance_for(output)
    store = read_c2pa(output)
    active = store["manifests"][store["active_manifest"]]
    actions = next(a for a in active["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
    assert actions[1]["digitalSourceType"] == TRAINED_COMPOSITE
    assert active["ingredients"][0]["title"] == "Megamind.avi"
    trusted = read_c2pa(output, (home / "keys" / "c2pa-ca.pem").read_bytes())
    assert trusted["validation_state"] == "Trusted"
    report = verify_provenance(output, (home / "keys" / "c2pa-ca.pem").read_bytes())
    assert report.ok, report.problems
    assert report.c2pa_actions == ["c2pa.opened", "c2pa.edited"]
    manifest = json.loads(sidecar.read_text())["manifest"]
    assert manifest["grant_ids"] == ["g-0123456789abcdef"] and manifest["ledger_head"] == "cd" * 32
    assert manifest["inputs"][0]["sha256"] and manifest["c2pa"] is True
    with av.open(str(output)) as reopened:  # still a playable video with every frame
        assert sum(1 for _ in reopened.decode(video=0)) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_changed_output_or_sidecar_fails_verification(tmp_path: Path, home: Path) -> None:
    output = small_mp4(tmp_path / "out.mp4")
    sidecar = provenance_for(output)
    data = json.loads(sidecar.read_text())
    data["manifest"]["grant_ids"] = ["g-forged"]
    sidecar.write_text(json.dumps(data))
    assert any("signature does not verify" in p for p in verify_provenance(output).problems)
    provenance_for(output)
    with open(output, "ab") as handle:
        handle.write(b"\0" * 16)
    problems = verify_provenance(output).problems
    assert any("changed after its manifest was signed" in p for p in problems)


def test_verify_command_reports_steps_and_grants(tmp_path: Path, home: Path) -> None:
    output = small_mp4(tmp_path / "out.mp4")
    provenance_for(output)
    env = {**os.environ, "VFX_HOME": str(home), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "vfx.cli", "provenance", "verify", str(output)],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "grants   g-0123456789abcdef" in result.stdout and "c2pa     Trusted: c2pa.opened -> c2pa.edited" in result.stdout
    output.with_name("out.mp4.provenance.json").unlink()
    missing = subprocess.run([sys.executable, "-m", "vfx.cli", "provenance", "verify", str(output)],
                             capture_output=True, text=True, env=env, cwd=REPO)
    assert missing.returncode != 0 and "no provenance sidecar" in missing.stderr and "Traceback" not in missing.stderr


def test_png_output_gets_a_signed_sidecar_only(tmp_path: Path, home: Path) -> None:
    import cv2

    output = tmp_path / "still.png"
    cv2.imwrite(str(output), np.zeros((8, 8, 3), np.uint8))
    provenance_for(output)
    report = verify_provenance(output)
    assert report.ok and report.manifest["c2pa"] is False and report.c2pa_state is None
    assert signing_material().c2pa_chain_pem.count(b"BEGIN CERTIFICATE") == 2
