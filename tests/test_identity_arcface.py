"""ArcFace identity backend with a tiny random ONNX graph of the real signature, on Megamind.avi.

Random weights cannot be trusted to separate identities, so these tests check what they can
honestly show: the interface, alignment, determinism, normalisation, the backend recorded per
subject, the gate refusing mixed backends, and the licence opt-in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from conftest import SAMPLES
from consent_helpers import TEST_FRAME, enrolled_embeddings, frame
from vfx.cli import app
from vfx.consent.gate import GateConfig, open_gate
from vfx.consent.keys import generate_key
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import collect_embeddings, enroll, load_subjects
from vfx.errors import VfxError
from vfx.face.arcface import ALIGN_SIZE, ARCFACE_TEMPLATE, align, alignment_transform, anchors_from_dlib
from vfx.face.identity import detect_faces, five_point_landmarks
from vfx.face.identity_backends import identity_backend

MEGAMIND = SAMPLES / "Megamind.avi"
REPO = Path(__file__).resolve().parents[1]
HOLDER = Ed25519PrivateKey.generate()  # the rights holder who signs the enrolments


def holder_key_file(directory):
    generate_key(directory / "holder.key")
    return directory / "holder.key"


def tiny_arcface(path: Path, input_name: str = "data", output_name: str = "fc1") -> Path:
    """Conv 16x16 stride 16 -> ReLU -> flatten -> dense 512: the real I/O, random weights."""
    rng = np.random.default_rng(0)
    conv = numpy_helper.from_array(rng.normal(0, 0.05, (8, 3, 16, 16)).astype(np.float32), "conv_w")
    dense = numpy_helper.from_array(rng.normal(0, 0.05, (8 * 7 * 7, 512)).astype(np.float32), "dense_w")
    nodes = [helper.make_node("Conv", [input_name, "conv_w"], ["c"], strides=[16, 16]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "dense_w"], [output_name])]
    graph = helper.make_graph(nodes, "arcface_tiny",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 512])], [conv, dense])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def arcface_store(tmp_path: Path, monkeypatch) -> Path:
    """The real arcface_r100 manifest entry, its weights imported from a tiny graph with `vfx models import`."""
    real = yaml.safe_load((REPO / "configs" / "models.yaml").read_text())["models"]["arcface_r100"]
    manifest = tmp_path / "models.yaml"
    manifest.write_text(yaml.safe_dump({"models": {"arcface_r100": real}}, sort_keys=False))
    monkeypatch.setenv("VFX_MODEL_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("VFX_MODEL_MANIFEST", str(manifest))
    result = CliRunner().invoke(app, ["models", "import", "arcface_r100", str(tiny_arcface(tmp_path / "tiny.onnx"))])
    assert result.exit_code == 0, result.output
    return tmp_path


def test_alignment_puts_the_eyes_on_the_template():
    image = frame(TEST_FRAME)
    boxes = detect_faces(image)
    points = five_point_landmarks(image, boxes[:1])[0]
    matrix = alignment_transform(points)
    eyes = anchors_from_dlib(points)[:2]
    mapped = eyes @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE[:2]).max() < 3.0, mapped
    # The eyes found again in the aligned crop (upscaled 4x for dlib's predictor) sit on the template too.
    crop = align(image, points)
    big = np.ascontiguousarray(np.repeat(np.repeat(crop, 4, axis=0), 4, axis=1))
    again = five_point_landmarks(big, [(0.0, 0.0, 4.0 * ALIGN_SIZE, 4.0 * ALIGN_SIZE)])[0] / 4
    found = anchors_from_dlib(again)[:2]
    assert np.abs(found - ARCFACE_TEMPLATE[:2]).max() < 5.0, found


def test_embeddings_are_deterministic_unit_vectors(arcface_store):
    backend = identity_backend("arcface", allow_noncommercial=True)
    image = frame(TEST_FRAME)
    boxes = detect_faces(image)
    first, second = backend.embed(image, boxes), backend.embed(image, boxes)
    assert first.shape == (2, 512) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, second)
    assert set(backend.model_hashes) == {"arcface_r100"}


def test_enrol_with_arcface_records_the_backend_and_matches_its_own_face(arcface_store, tmp_path):
    backend = identity_backend("arcface", allow_noncommercial=True)
    enrolment = collect_embeddings(MEGAMIND, "30-55", step=5, backend=backend)
    assert enrolment.embeddings.shape[1] == 512
    np.testing.assert_allclose(np.linalg.norm(enrolment.embeddings, axis=1), 1.0, atol=1e-5)
    url = f"sqlite:///{tmp_path / 'consent.db'}"
    enroll(ConsentStore(url), "megamind", enrolment.embeddings, "Megamind.avi 30-55", backend.stored, key=HOLDER)
    with ConsentStore(url).session() as session:
        (subject,) = load_subjects(session)
    assert subject.backend == "arcface-r100" and subject.embeddings.shape == enrolment.embeddings.shape
    gate = open_gate(url, "p", config=GateConfig(allow_noncommercial=True), trusted={})
    assert gate.identity.name == "arcface" and gate.threshold == 0.6
    image = frame(TEST_FRAME)
    own, other = gate.embed(image, detect_faces(image))  # largest first: the enrolled character
    to_own = gate.identity.distance(own, subject.embeddings).min()
    to_other = gate.identity.distance(other, subject.embeddings).min()
    assert to_own < to_other, (to_own, to_other)
    refused = gate.check(enrolled_embeddings()[0], "rejuvenate")  # a 128-d dlib embedding
    assert not refused.allowed and "arcface-r100" in refused.reason


def test_gate_refuses_subjects_of_mixed_backends(arcface_store, tmp_path):
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    store = ConsentStore(url)
    enroll(store, "megamind", enrolled_embeddings(), "dlib refs", key=HOLDER)
    unit = np.eye(512, dtype=np.float32)[:2]
    enroll(store, "minion", unit, "arcface refs", "arcface-r100", key=HOLDER)
    with pytest.raises(VfxError, match=r"mix identity backends \(arcface-r100: minion; dlib-resnet-v1: megamind\)") as info:
        open_gate(url, "p", config=GateConfig(allow_noncommercial=True), trusted={})
    assert "\n" not in str(info.value)
    with pytest.raises(VfxError, match=r"needs embeddings \[N,512\]"):
        enroll(store, "titan", enrolled_embeddings(), "dlib refs labelled arcface", "arcface-r100", key=HOLDER)


def test_arcface_needs_the_noncommercial_opt_in_and_shows_its_licence(arcface_store, tmp_path):
    with pytest.raises(VfxError, match="non-commercial research only.*--allow-noncommercial"):
        identity_backend("arcface")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["consent", "enroll", "megamind", "--from", str(MEGAMIND), "--frames", "30-40", "--step", "5",
            "--identity", "arcface", "--db", db, "--key", str(holder_key_file(tmp_path))]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0
    assert "licence: insightface models: non-commercial research only" in refused.output
    allowed = CliRunner().invoke(app, [*args, "--allow-noncommercial"])
    assert allowed.exit_code == 0, allowed.output
    assert "licence: insightface models: non-commercial research only" in allowed.output
    assert "enrolled megamind with arcface-r100" in allowed.output
    with ConsentStore(db).session() as session:
        assert [s.backend for s in load_subjects(session)] == ["arcface-r100"]
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    enroll(ConsentStore(url), "minion", np.eye(512, dtype=np.float32)[:1], "refs", "arcface-r100", key=HOLDER)
    with pytest.raises(VfxError, match="--allow-noncommercial"):
        open_gate(url, "p", trusted={})
