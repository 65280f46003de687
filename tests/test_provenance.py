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

from conftest import SAMPLES
from vfx.errors import VfxError
from vfx.provenance import signing_material, verify_provenance, write_provenance
from vfx.provenance.c2pa_embed import TRAINED_COMPOSITE, read_c2pa

REPO = Path(__file__).resolve().parents[1]
MEGAMIND = SAMPLES / "Megamind.avi"


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
    root = (home / "keys" / "c2pa-ca.pem").read_bytes()
    assert any("signature does not verify" in p for p in verify_provenance(output, root).problems)
    provenance_for(output)
    with open(output, "ab") as handle:
        handle.write(b"\0" * 16)
    problems = verify_provenance(output, root).problems
    assert any("changed after its manifest was signed" in p for p in problems)


def test_verify_command_reports_steps_and_grants(tmp_path: Path, home: Path) -> None:
    output = small_mp4(tmp_path / "out.mp4")
    provenance_for(output)
    env = {**os.environ, "VFX_HOME": str(home), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "vfx.cli", "provenance", "verify", str(output)],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "grants   g-0123456789abcdef" in result.stdout and "c2pa     Trusted: c2pa.opened -> c2pa.edited" in result.stdout
    assert "this machine's root" in result.stdout
    output.with_name("out.mp4.provenance.json").unlink()
    missing = subprocess.run([sys.executable, "-m", "vfx.cli", "provenance", "verify", str(output)],
                             capture_output=True, text=True, env=env, cwd=REPO)
    assert missing.returncode != 0 and "no provenance sidecar" in missing.stderr and "Traceback" not in missing.stderr


def test_png_output_gets_a_signed_sidecar_only(tmp_path: Path, home: Path) -> None:
    import cv2

    output = tmp_path / "still.png"
    cv2.imwrite(str(output), np.zeros((8, 8, 3), np.uint8))
    provenance_for(output)
    report = verify_provenance(output, (home / "keys" / "c2pa-ca.pem").read_bytes())
    assert report.ok and report.manifest["c2pa"] is False and report.c2pa_state is None
    assert signing_material().c2pa_chain_pem.count(b"BEGIN CERTIFICATE") == 2


# -- pinned trust ---------------------------------------------------------------------------------

def verify_cli(output: Path, *options: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VFX_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("VFX_SIGNING_KEYS", None)
    return subprocess.run([sys.executable, "-m", "vfx.cli", "provenance", "verify", str(output), *options],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def remux(source: Path, target: Path) -> None:
    """Copy the video packets into a new MP4, as any remuxer does: the C2PA box does not survive."""
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)


@pytest.fixture()
def pinned(tmp_path: Path, home: Path) -> tuple[Path, Path]:
    """A genuine output signed by the studio, and the studio's root copied to the verifier's side."""
    output = small_mp4(tmp_path / "out.mp4")
    provenance_for(output)
    root = tmp_path / "studio-root.pem"
    root.write_bytes((home / "keys" / "c2pa-ca.pem").read_bytes())
    return output, root


def test_genuine_output_passes_against_the_pinned_root(pinned, tmp_path: Path) -> None:
    output, root = pinned
    elsewhere = tmp_path / "verifier-home"  # the verifier has no keys of their own
    result = verify_cli(output, "--trust", str(root), home=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "provenance ok" in result.stdout and "c2pa     Trusted" in result.stdout
    assert "signed   by CN=vfx provenance signer" in result.stdout


def test_output_re_signed_with_another_key_fails_against_the_pinned_root(pinned, tmp_path: Path, monkeypatch) -> None:
    output, root = pinned
    monkeypatch.setenv("VFX_HOME", str(tmp_path / "forger"))  # a forger's own, self-made signing identity
    provenance_for(output)
    report = verify_provenance(output, root.read_bytes())
    assert not report.ok
    assert any(p.startswith("signed by an unknown signer: CN=vfx provenance signer") and "not issued by the trusted root"
               in p for p in report.problems), report.problems
    assert any("signingCredential.untrusted" in p for p in report.problems), report.problems
    result = verify_cli(output, "--trust", str(root), home=tmp_path / "verifier")
    assert result.returncode != 0 and "unknown signer" in result.stderr and "Traceback" not in result.stderr


def test_stripped_c2pa_manifest_fails_and_says_so(pinned, tmp_path: Path) -> None:
    output, root = pinned
    stripped = tmp_path / "stripped.mp4"
    remux(output, stripped)
    stripped.with_name("stripped.mp4.provenance.json").write_bytes(output.with_name("out.mp4.provenance.json").read_bytes())
    assert read_c2pa(stripped) is None
    problems = verify_provenance(stripped, root.read_bytes()).problems
    assert "stripped.mp4 has no embedded C2PA manifest (stripped)" in problems
    assert any("changed after its manifest was signed: its bytes hash to sha256" in p for p in problems)


def test_stripped_and_re_signed_as_if_never_embedded_still_fails(pinned, tmp_path: Path, monkeypatch) -> None:
    output, root = pinned
    stripped = tmp_path / "plain.mp4"
    remux(output, stripped)
    monkeypatch.setenv("VFX_HOME", str(tmp_path / "forger"))
    write_provenance(stripped, [str(MEGAMIND)], [], {}, {}, [], None, embed=False)  # "c2pa": false, forger's key
    problems = verify_provenance(stripped, root.read_bytes()).problems
    assert "plain.mp4 has no embedded C2PA manifest (stripped, and the sidecar claims none was embedded)" in problems
    assert any(p.startswith("signed by an unknown signer") for p in problems)


def test_pinned_signer_certificate_accepts_only_that_signer(pinned, tmp_path: Path, home: Path) -> None:
    output, _ = pinned
    signer = home / "keys" / "c2pa-signer.pem"
    assert verify_provenance(output, signer_pem=signer.read_bytes()).ok
    other = small_mp4(tmp_path / "other.mp4")
    write_provenance(other, [str(MEGAMIND)], [], {}, {}, [], None, signing_key=signing_material(tmp_path / "forger"))
    problems = verify_provenance(other, signer_pem=signer.read_bytes()).problems
    assert any("not the pinned signer" in p for p in problems), problems


def test_nothing_pinned_is_not_ok(pinned, tmp_path: Path) -> None:
    output, _ = pinned
    report = verify_provenance(output)
    assert not report.ok and report.problems[0].startswith("no trust pinned")


def test_deployed_signing_keys_are_used_and_never_created(tmp_path: Path, home: Path, monkeypatch) -> None:
    secret = tmp_path / "secret"
    result = subprocess.run([sys.executable, "-m", "vfx.cli", "provenance", "keygen", str(secret)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.stat().st_mode & 0o777 for p in secret.iterdir() if p.suffix == ".key"} == {
        "c2pa-ca.key": 0o600, "c2pa-signer.key": 0o600}
    (secret / "c2pa-ca.key").unlink()  # the root's key stays offline; replicas get the signer and the root cert
    monkeypatch.setenv("VFX_SIGNING_KEYS", str(secret))
    output = small_mp4(tmp_path / "out.mp4")
    provenance_for(output)
    assert verify_provenance(output, (secret / "c2pa-ca.pem").read_bytes()).ok
    assert not (home / "keys").exists()
    monkeypatch.setenv("VFX_SIGNING_KEYS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VfxError, match="VFX_SIGNING_KEYS=.*missing c2pa-signer.pem"):
        signing_material()
    assert list((tmp_path / "empty").iterdir()) == []


def test_local_keys_are_private(home: Path) -> None:
    signing_material()
    assert (home / "keys").stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in (home / "keys").glob("*.key")} == {
        "c2pa-ca.key": 0o600, "c2pa-signer.key": 0o600}


def test_consent_assertion_and_edited_regions_in_the_c2pa_manifest(tmp_path: Path, home: Path) -> None:
    output = small_mp4(tmp_path / "out.mp4")
    consent = [{"grant_id": "g-0123456789abcdef", "subject": "megamind", "subject_digest": "ab" * 32,
                "operation": "rejuvenate", "ranges": [{"first": 0, "last": 3, "x": 10, "y": 20, "width": 100, "height": 120},
                                                      {"first": 5, "last": 5, "x": 12, "y": 22, "width": 90, "height": 110}]}]
    write_provenance(output, [str(MEGAMIND)], [{"name": "rejuvenate"}], {}, {}, ["g-0123456789abcdef"], None, consent=consent)
    store = read_c2pa(output, (home / "keys" / "c2pa-ca.pem").read_bytes())
    assert store["validation_state"] == "Trusted"
    assertions = {a["label"]: a["data"] for a in store["manifests"][store["active_manifest"]]["assertions"]}
    assert assertions["org.vfx.consent"] == {"version": 1, "edits": consent}
    likeness = assertions["c2pa.actions.v2"]["actions"][2]
    assert likeness["action"] == "c2pa.edited" and likeness["parameters"]["vfx.grant_id"] == "g-0123456789abcdef"
    first, second = likeness["changes"]
    assert first["region"][0] == {"type": "frame", "frame": {"start": 0, "end": 3}}
    assert first["region"][1]["shape"]["origin"] == {"x": 10.0, "y": 20.0} and second["region"][1]["shape"]["width"] == 90.0
    assert json.loads(sidecar_of(output))["manifest"]["consent"] == consent


def sidecar_of(output: Path) -> str:
    return output.with_name(output.name + ".provenance.json").read_text()
