"""The command line: bad input gets one clear line and a non-zero exit, never a traceback or a partial file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import SAMPLES
from video_helpers import read_all, run_cli

REPO = Path(__file__).resolve().parents[1]

VTEST = str(SAMPLES / "vtest.avi")


def assert_refused(result, fragment: str, folder) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("vfx: error:")]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]
    leftovers = [p.name for p in folder.iterdir()] if folder.exists() else []
    assert leftovers == [], f"partial output left behind: {leftovers}"


@pytest.mark.parametrize("args,fragment", [
    (["missing.avi", "--style", "oil"], "no such file"),
    ([VTEST, "--style", "glitter"], "unknown style 'glitter'"),
    ([VTEST, "--subject", "box:700,500,200,200@0", "--style", "oil"], "outside the 768x576 frame"),
    ([VTEST, "--subject", "point:10,10@900", "--style", "oil"], "outside the frames processed"),
    ([VTEST, "--subject", "circle:1,2", "--style", "oil"], "expected person, box"),
    ([VTEST, "--style", "oil", "--frames", "700-900"], "outside the source"),
    ([VTEST], "nothing to do"),
    ([str(REPO / "README.md"), "--style", "oil"], "not a readable video"),  # a real file, not a video
    ([VTEST, "--style", "oil", "--config", "nope.yaml"], "config file not found"),
    ([VTEST, "--rejuvenate", "0.5"], "consent-gated steps need a project name"),
])
def test_bad_input_is_one_line(tmp_path, args, fragment):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [a if a != "missing.avi" else str(tmp_path / "missing.avi") for a in args]
    result = run_cli("run", *args, "-o", str(out_dir / "o.mp4"), "-q")
    assert_refused(result, fragment, out_dir)


def test_unwritable_output_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    result = run_cli("run", VTEST, "--style", "oil", "-o", str(tmp_path / "no" / "such" / "dir" / "o.mp4"), "-q")
    assert_refused(result, "does not exist", locked)
    if os.geteuid() != 0:  # root writes anywhere; the mode check means nothing then
        locked.chmod(0o500)
        result = run_cli("run", VTEST, "--style", "oil", "-o", str(locked / "o.mp4"), "-q")
        assert_refused(result, "not writable", locked)


def test_strict_refuses_a_damaged_clip_and_leaves_nothing(tmp_path):
    damaged = tmp_path / "in" / "damaged.avi"
    damaged.parent.mkdir()
    data = (SAMPLES / "vtest.avi").read_bytes()
    damaged.write_bytes(data[: len(data) // 10])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_cli("run", str(damaged), "--style", "night", "--frames", "0-119", "--strict", "-o", str(out_dir / "o.mp4"), "-q")
    assert_refused(result, "cannot be decoded", out_dir)


def test_run_writes_output_matte_preview_and_reports(tmp_path):
    result = run_cli("run", VTEST, "--subject", "person", "--style", "golden_hour", "--frames", "10-33",
                     "--batch-size", "6", "-o", str(tmp_path / "o.mp4"), "--matte", str(tmp_path / "m.mp4"),
                     "--preview", str(tmp_path / "sheet.png"))
    assert result.returncode == 0, result.stderr
    assert "24 frames" in result.stdout and "frames/s" in result.stdout
    assert len(read_all(tmp_path / "o.mp4")[0]) == 24 and len(read_all(tmp_path / "m.mp4")[0]) == 24
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
    assert (tmp_path / "o.mp4.provenance.json").is_file()
    verified = run_cli("provenance", "verify", str(tmp_path / "o.mp4"))
    assert verified.returncode == 0, verified.stderr


def test_help_explains_every_option():
    result = run_cli("run", "--help")
    assert result.returncode == 0
    for option in ("--subject", "--style", "--style-image", "--matte", "--frames", "--batch-size", "--config",
                   "--rejuvenate", "--lipsync", "--project", "--device", "--segmenter", "--prompt"):
        assert option in result.stdout
