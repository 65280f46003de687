"""The one backend registry: every backend declared against the real manifest, the licence policy
written once, plans that load nothing, and provenance naming every model whose weights shaped a pixel."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from face_helpers import MEGAMIND, make_consent
from model_helpers import manifest_entry, tiny_diffusion, tiny_sam, write_store
from test_face_onnx import tiny_age_model

from vfx import registry
from vfx.config import FaceConfig, PipelineConfig, RestyleConfig, SegmentConfig
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState, Step
from vfx.job import JobSpec, plan_steps, run_job
from vfx.models import load_manifest
from vfx.pipeline import Pipeline
from vfx.segment import PromptSegmenter, parse_subject
from vfx.video import FrameReader, probe
from vfx.video.probe import FrameRange


def test_every_backend_is_declared_against_the_manifest():
    manifest = load_manifest()
    kinds = {entry.kind for entry in manifest.models.values()}
    every = registry.backends()
    assert {b.capability for b in every} == set(registry.CAPABILITIES)
    for backend in every:
        for name in backend.models:
            assert name in manifest.models, f"{backend.capability}/{backend.name} loads undeclared model {name}"
        assert backend.model_kind is None or backend.model_kind in kinds, backend
        assert backend.licence
    for capability in registry.CAPABILITIES:  # each runs offline on a laptop: an embedded backend with no GPU
        assert any(not b.needs_gpu and b.model_kind is None and not b.models for b in registry.backends(capability))


@pytest.fixture(scope="module")
def noncommercial_store(tmp_path_factory):
    """Tiny SAM, diffusion and ONNX age models, all declared non-commercial."""
    src = tmp_path_factory.mktemp("published")
    entries = {"sam_tiny": {**tiny_sam(src), "commercial_use": False, "licence": "test non-commercial"},
               "sd_tiny": tiny_diffusion(src, "sd_tiny", commercial=False)}
    (src / "age_tiny").mkdir()
    tiny_age_model(src / "age_tiny" / "face_age.onnx")
    entries["age_tiny"] = manifest_entry("face_age", src / "age_tiny", ["face_age.onnx"], commercial=False)
    return src, entries


def test_auto_never_picks_a_noncommercial_model_without_the_opt_in(noncommercial_store, tmp_path, monkeypatch):
    src, entries = noncommercial_store
    store = write_store(tmp_path / "store", entries, monkeypatch)
    for name in entries:
        store.import_from(name, src / name)
    everything = PipelineConfig(segment=SegmentConfig(subject=["box:10,10,40,40@0"]),
                                restyle=RestyleConfig(prompt="a storm", style="oil"),
                                face=FaceConfig(rejuvenate=0.5))
    for device in ("cpu", "cuda"):  # planning reads the device name only: no GPU is touched
        chosen = plan_steps(everything, device)
        assert all(c.model is None for c in chosen.choices), chosen
        assert chosen.describe() == {"segment": "prompt", "face_detect": "mediapipe", "rejuvenate": "classic",
                                     "restyle": "classic"}
    opted_in = everything.model_copy(update={
        "segment": everything.segment.model_copy(update={"allow_noncommercial": True}),
        "restyle": everything.restyle.model_copy(update={"allow_noncommercial": True}),
        "face": everything.face.model_copy(update={"allow_noncommercial": True})})
    assert plan_steps(opted_in, "cuda").describe() == {
        "segment": "sam (sam_tiny)", "face_detect": "mediapipe", "rejuvenate": "onnx (age_tiny)", "restyle": "diffusion (sd_tiny)"}
    assert plan_steps(opted_in, "cpu").describe()["segment"] == "prompt"  # model backends need a GPU for auto
    named = everything.model_copy(update={"segment": everything.segment.model_copy(update={"backend": "sam"})})
    with pytest.raises(VfxError, match="segment backend sam: sam_tiny present but licensed for non-commercial use only"):
        plan_steps(named, "cpu")
    named_model = named.model_copy(update={"segment": named.segment.model_copy(update={"model": "sam_tiny"})})
    assert plan_steps(named_model, "cpu").get("segment").model == "sam_tiny"  # naming the model opts in


def test_planning_loads_no_weights(monkeypatch):
    def refuse(ctx):
        raise AssertionError(f"planning built {ctx.choice}")
    for backend in registry.backends():
        monkeypatch.setitem(registry._BACKENDS[backend.capability], backend.name, dataclasses.replace(backend, build=refuse))
    plan = plan_steps(PipelineConfig(segment=SegmentConfig(subject=["person"]), restyle=RestyleConfig(style="oil"),
                                     face=FaceConfig(rejuvenate=0.8)), "cpu")
    assert [c.capability for c in plan.choices] == ["segment", "face_detect", "rejuvenate", "restyle"]


def test_unknown_backend_and_nothing_to_do_are_one_line_errors():
    with pytest.raises(VfxError, match=r"unknown restyle.backend 'van_gogh'; choose auto, "):
        plan_steps(PipelineConfig(restyle=RestyleConfig(style="oil", backend="van_gogh")), "cpu")
    with pytest.raises(VfxError, match="nothing to do"):
        plan_steps(PipelineConfig(), "cpu")


def test_pipeline_drives_prepare_and_finish_for_anyone_who_builds_one():
    """A prompt on a later key frame tracks backward in prepare(): Pipeline runs it, not only run_job."""
    info = probe(str(MEGAMIND))
    shot_range = FrameRange(160, 171)
    step = PromptSegmenter(parse_subject(["box:80,0,330,528@168"]).prompt)
    shot = ShotState(info.width, info.height, float(info.fps), shot_range.first, shot_range.last, str(MEGAMIND))
    mattes = []

    class Collect:
        def write(self, batch: FrameBatch) -> None:
            mattes.append(batch.matte)

        def close(self) -> None: ...
        def abort(self) -> None: ...

    def frames(first, last):
        return FrameReader(info, FrameRange(first, last)).frames()
    result = Pipeline([step])(FrameReader(info, shot_range).batches(4), shot, [Collect()], frames=frames)
    assert result.frames == 12 and all(m is not None and m.max() == 1.0 for m in mattes)
    with pytest.raises(VfxError, match="needs the shot's frames"):
        Pipeline([step])(FrameReader(info, shot_range).batches(4), shot, [Collect()])


def test_pipeline_refuses_what_is_not_a_step():
    with pytest.raises(TypeError, match="must subclass vfx.frames.Step"):
        Pipeline([lambda batch, shot: batch])

    class Same(Step):
        name = "x"

        def __call__(self, batch, shot):
            return batch
    with pytest.raises(ValueError, match="unique"):
        Pipeline([Same(), Same()])


def test_provenance_names_every_model_that_shaped_a_pixel(noncommercial_store, tmp_path, monkeypatch):
    src, entries = noncommercial_store
    store = write_store(tmp_path / "store", entries, monkeypatch)
    for name in entries:
        store.import_from(name, src / name)
    (tmp_path / "consent").mkdir()
    consent = make_consent(tmp_path / "consent", ("rejuvenate",))
    config = PipelineConfig(
        segment=SegmentConfig(subject=["box:300,60,260,300@154"], backend="sam", model="sam_tiny"),
        restyle=RestyleConfig(prompt="a storm", backend="diffusion", model="sd_tiny", steps=2, max_side=128),
        face=FaceConfig(rejuvenate=1.0, backend="onnx", allow_noncommercial=True), device="cpu", batch_size=2)
    output = tmp_path / "out.mp4"
    result = run_job(JobSpec(str(MEGAMIND), str(output), config, frames="154-157"), gate=consent.gate())
    sidecar = json.loads(Path(result.provenance).read_text())["manifest"]
    hashes = sidecar["model_hashes"]
    for name, entry in entries.items():
        for file in entry["files"]:
            assert hashes[f"{name}/{file['path']}"] == file["sha256"], name
    assert any(key.startswith("dlib") or "resnet" in key for key in hashes), hashes  # the gate's identity model
    assert sidecar["backends"]["plan.rejuvenate"] == "onnx (age_tiny)"
    assert consent.grant_id in sidecar["grant_ids"]
