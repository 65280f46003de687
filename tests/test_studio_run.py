"""One `vfx run` that keeps a tracked subject, rejuvenates only the consented actor and restyles the rest,
driven entirely from the command line: keygen, enrol, grant, run, verify ledger and provenance."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import pytest

from conftest import SAMPLES
from video_helpers import read_all
from vfx.video import FrameRange, FrameReader, probe

MEGAMIND = str(SAMPLES / "Megamind.avi")
FRAMES = "160-177"  # Roxanne talking, one shot


def vfx(home, *args):
    env = {**os.environ, "VFX_HOME": str(home)}
    env.pop("VFX_CONSENT_DB", None)
    return subprocess.run([sys.executable, "-m", "vfx.cli", *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    key = home / "holder.key"
    for args in (("consent", "keygen", str(key), "--trust"),
                 ("consent", "enroll", "roxanne", "--from", MEGAMIND, "--frames", "160-195", "--step", "5", "--key", str(key)),
                 ("consent", "enroll", "hal", "--from", MEGAMIND, "--frames", "200-260", "--step", "10", "--key", str(key))):
        result = vfx(home, *args)
        assert result.returncode == 0, result.stderr
    until = (date.today() + timedelta(days=30)).isoformat()
    granted = vfx(home, "consent", "grant", "roxanne", "--project", "reel-1", "--ops", "rejuvenate", "--until", until, "--key", str(key))
    assert granted.returncode == 0, granted.stderr
    return home


def run_reel(studio, tmp_path, project):
    out = tmp_path / f"{project}.%04d.png"
    result = vfx(studio, "run", MEGAMIND, "-o", str(out), "--frames", FRAMES, "--subject", "box:60,0,360,528@170",
                 "--style", "night", "--rejuvenate", "1.0", "--project", project, "--matte", str(tmp_path / "m.%04d.png"), "-q")
    assert result.returncode == 0, result.stderr
    return result, read_all(out)[1], read_all(tmp_path / "m.%04d.png")[1][..., 0]


def test_consented_face_edited_subject_kept_background_restyled(studio, tmp_path):
    result, output, matte = run_reel(studio, tmp_path, "reel-1")
    source = np.stack([f for _, f in FrameReader(probe(MEGAMIND), FrameRange(160, 177)).frames()])
    subject, background = matte == 255, matte == 0
    changed = np.abs(output.astype(int) - source.astype(int)).max(axis=-1) > 0
    assert "face edits under grants:" in result.stdout
    assert changed[subject].mean() > 0.01, "the consented face inside the subject was rejuvenated"
    assert changed[subject].mean() < 0.5, "the rest of the subject is untouched"
    assert changed[background].mean() > 0.9, "the surroundings were restyled"
    ledger = vfx(studio, "consent", "verify")
    assert ledger.returncode == 0, ledger.stderr


def test_no_grant_for_the_project_leaves_the_subject_identical(studio, tmp_path):
    _, output, matte = run_reel(studio, tmp_path, "reel-2")
    source = np.stack([f for _, f in FrameReader(probe(MEGAMIND), FrameRange(160, 177)).frames()])
    subject = matte == 255
    assert subject.mean() > 0.1
    assert np.array_equal(output[subject], source[subject])


def test_mp4_output_carries_grants_in_signed_provenance(studio, tmp_path):
    out = tmp_path / "reel.mp4"
    result = vfx(studio, "run", MEGAMIND, "-o", str(out), "--frames", FRAMES, "--rejuvenate", "0.8", "--project", "reel-1", "-q")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "reel.mp4.provenance.json").read_text())
    assert sidecar["manifest"]["grant_ids"], "the grant used is named"
    assert sidecar["manifest"]["ledger_head"]
    (edit,) = sidecar["manifest"]["consent"]  # the likeness edit, its grant, frames and face region
    assert edit["subject"] == "roxanne" and edit["operation"] == "rejuvenate" and edit["grant_id"] in sidecar["manifest"]["grant_ids"]
    assert edit["ranges"] and all(r["width"] > 0 and r["height"] > 0 for r in edit["ranges"])
    report = vfx(studio, "provenance", "verify", str(out), "--trust", str(studio / "keys" / "c2pa-ca.pem"))
    assert report.returncode == 0, report.stderr
    assert "consent  rejuvenate of roxanne under" in report.stdout
    assert sidecar["manifest"]["grant_ids"][0] in report.stdout
