"""The model layer: each stage loads through production's load_stage and answers on real images.

Tiny random-weight models (tests/fix_models.py) stand in for BLIP, DETR, ViT, CLIP and
InceptionResnetV1; MTCNN and MiniLM are the real weights that ship in packages.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from fix_models import DETECTOR_LABELS, EMOTIONS
from huggingface_hub import constants as hub_constants
from matplotlib import cbook
from PIL import Image

from semsql.embedder.models import (
    DEFAULT_MODELS,
    STAGES,
    DetectedFace,
    Emotion,
    ModelLoadError,
    Tag,
    load_model_config,
    load_stage,
    load_stages,
)
from semsql.embedder.models.device import (
    DeviceError,
    default_dtype,
    device_from_env,
    resolve_device,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skimage.data.chelsea())


@pytest.fixture(scope="module")
def grace_hopper() -> Image.Image:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def photos(astronaut: Image.Image, chelsea: Image.Image, grace_hopper: Image.Image):
    """Three real photos of three different sizes."""
    return [astronaut, chelsea, grace_hopper]


@pytest.fixture(scope="module")
def face_detector():
    return load_stage("faces", "mtcnn", CPU)


@pytest.fixture(scope="module")
def photo_face_boxes(face_detector, photos: list[Image.Image]) -> list[list[tuple[float, ...]]]:
    return [[face.box for face in faces] for faces in face_detector.run(photos)]


def assert_unit_rows(vectors: np.ndarray, dims: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape[1:] == (dims,)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def assert_box_inside(box: tuple[float, ...], image: Image.Image) -> None:
    x0, y0, x1, y1 = box
    assert 0 <= x0 <= x1 <= image.width
    assert 0 <= y0 <= y1 <= image.height


# --- device and configuration ------------------------------------------------------------


def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == CPU
    expected = {"cuda"} if torch.cuda.is_available() else {"mps", "cpu"}
    assert resolve_device("auto").type in expected
    assert device_from_env({}) == resolve_device("auto")
    assert device_from_env({"SEMSQL_DEVICE": "cpu"}) == CPU


@pytest.mark.parametrize("name", ["cuda:99", "tpu", "gpu"])
def test_resolve_device_refuses_what_is_not_here(name: str) -> None:
    with pytest.raises(DeviceError, match=name):
        resolve_device(name)


def test_default_dtype() -> None:
    assert default_dtype(CPU) == torch.float32
    assert default_dtype(torch.device("cuda")) == torch.float16


def test_model_config_defaults_overrides_and_off() -> None:
    assert load_model_config({}) == {**DEFAULT_MODELS, "segments": None}  # off by default
    assert set(DEFAULT_MODELS) == set(STAGES)
    config = load_model_config(
        {
            "SEMSQL_MODEL_CAPTION": "/models/blip",
            "SEMSQL_MODEL_TAGS": "off",
            "SEMSQL_MODEL_FACE_VECTORS": "None",
            "SEMSQL_MODEL_EMOTION": "  ",
        }
    )
    assert config["caption"] == "/models/blip"
    assert config["tags"] is None
    assert config["face_vectors"] is None
    assert config["emotion"] == DEFAULT_MODELS["emotion"]


def test_reading_the_config_imports_no_model_library() -> None:
    code = (
        "import sys, semsql.embedder.models as m; m.load_model_config({}); "
        "print(sorted({'torch', 'transformers', 'facenet_pytorch'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_text_default_is_the_packaged_minilm() -> None:
    assert Path(DEFAULT_MODELS["text"], "model.safetensors").is_file()


def test_off_stage_loads_as_none() -> None:
    assert (
        load_stage("caption", load_model_config({"SEMSQL_MODEL_CAPTION": "off"})["caption"]) is None
    )


def test_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        load_stage("ocr", "x")


# --- image stages ------------------------------------------------------------------------


def test_caption(tiny_caption_model: str, photos: list[Image.Image]) -> None:
    stage = load_stage("caption", tiny_caption_model, CPU, max_new_tokens=8)
    assert stage.model_name == tiny_caption_model
    captions = stage.run(photos)
    assert len(captions) == len(photos)
    assert all(isinstance(caption, str) for caption in captions)
    assert stage.run(photos) == captions
    assert stage.run([]) == []


def test_caption_takes_any_image_mode(tiny_caption_model: str, astronaut: Image.Image) -> None:
    stage = load_stage("caption", tiny_caption_model, CPU, max_new_tokens=4)
    odd_modes = [astronaut.convert("L"), astronaut.convert("RGBA"), astronaut.convert("P")]
    assert len(stage.run(odd_modes)) == 3


def test_tags_thresholded(tiny_tags_model: str, photos: list[Image.Image]) -> None:
    stage = load_stage("tags", tiny_tags_model, CPU)
    tags = stage.run(photos)
    assert len(tags) == len(photos)
    # Whatever passes the default threshold (a random detector rarely has anything) is >= 0.7.
    assert all(tag.confidence >= 0.7 for image_tags in tags for tag in image_tags)


def test_tags_are_labelled_sorted_capped_and_inside_the_image(
    tiny_tags_model: str, photos: list[Image.Image]
) -> None:
    stage = load_stage("tags", tiny_tags_model, CPU, threshold=0.0)
    results = stage.run(photos)
    for image, tags in zip(photos, results, strict=True):
        assert 0 < len(tags) <= 20  # the detector proposes 30
        assert all(isinstance(tag, Tag) for tag in tags)
        assert {tag.label for tag in tags} <= set(DETECTOR_LABELS) - {"N/A"}
        confidences = [tag.confidence for tag in tags]
        assert confidences == sorted(confidences, reverse=True)
        for tag in tags:
            assert_box_inside(tag.box, image)
    assert stage.run(photos) == results


def test_clip_images_and_texts(tiny_clip_model: str, photos: list[Image.Image]) -> None:
    stage = load_stage("clip", tiny_clip_model, CPU)
    assert stage.dims == 16
    images = stage.encode_images(photos)
    assert_unit_rows(images, 16)
    assert len(stage.run(photos)) == len(photos)
    np.testing.assert_array_equal(np.stack(stage.run(photos)), images)
    texts = stage.encode(["a cat on a sofa", "an astronaut", "x" * 500])
    assert_unit_rows(texts, 16)
    assert texts.shape[0] == 3
    assert stage.encode([]).shape == (0, 16)


# --- faces -------------------------------------------------------------------------------


def test_mtcnn_finds_faces_in_people_and_none_in_a_cat(
    face_detector, photos: list[Image.Image]
) -> None:
    astronaut_faces, cat_faces, hopper_faces = face_detector.run(photos)
    assert len(astronaut_faces) >= 1
    assert len(hopper_faces) >= 1
    assert cat_faces == []
    for image, faces in zip(photos, (astronaut_faces, cat_faces, hopper_faces), strict=True):
        for face in faces:
            assert isinstance(face, DetectedFace)
            assert 0.9 <= face.confidence <= 1.0
            assert_box_inside(face.box, image)
            assert face.landmarks is not None and len(face.landmarks) == 5


def test_mtcnn_batch_equals_one_by_one(face_detector, astronaut: Image.Image) -> None:
    flipped = astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    batched = face_detector.run([astronaut, flipped])  # same size: one batched pass
    single = [face_detector.run([image])[0] for image in (astronaut, flipped)]
    for batch_faces, single_faces in zip(batched, single, strict=True):
        assert len(batch_faces) == len(single_faces)
        for a, b in zip(batch_faces, single_faces, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)


def test_mtcnn_finds_no_face_in_images_smaller_than_a_face(
    face_detector, astronaut: Image.Image
) -> None:
    # scikit-image ships such files (multipage.tif is 10x15); MTCNN itself raises on them.
    tiny = [Image.new("L", (10, 15)), Image.new("RGB", (14, 25)), astronaut.resize((19, 400))]
    assert face_detector.run(tiny) == [[], [], []]
    mixed = face_detector.run([tiny[0], astronaut])
    assert mixed[0] == [] and len(mixed[1]) >= 1


def test_mtcnn_boxes_of_downscaled_images_are_in_original_pixels(
    astronaut: Image.Image,
) -> None:
    full = load_stage("faces", "mtcnn", CPU).run([astronaut])[0][0].box
    small = load_stage("faces", "mtcnn", CPU, max_side=256).run([astronaut])[0][0].box
    np.testing.assert_allclose(small, full, atol=astronaut.width * 0.04)


def test_face_vectors(
    tiny_face_vectors_model: str, photo_face_boxes, photos: list[Image.Image]
) -> None:
    stage = load_stage("face_vectors", tiny_face_vectors_model, CPU)
    boxes = [list(image_boxes) for image_boxes in photo_face_boxes]
    boxes[1] = [(0.0, 0.0, 60.0, 60.0), (100.0, 50.0, 180.0, 160.0)]  # any box crops
    vectors = stage.run(photos, boxes)
    assert [len(v) for v in vectors] == [len(b) for b in boxes]
    assert stage.dims == 512
    assert_unit_rows(np.stack([v for image_vectors in vectors for v in image_vectors]), 512)
    again = stage.run(photos, boxes)
    np.testing.assert_array_equal(np.stack(again[0]), np.stack(vectors[0]))
    assert stage.run(photos, [[], [], []]) == [[], [], []]
    with pytest.raises(ValueError, match="3 images but 1"):
        stage.run(photos, [[]])


def test_a_face_model_has_one_stored_name_however_its_file_is_named(
    tiny_face_vectors_model: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faces stored under another model name are embedded again: a relative path, or a link,
    # to the same file must not count as another model.
    weights = Path(tiny_face_vectors_model)
    link = tmp_path / "link.pt"
    link.symlink_to(weights)
    monkeypatch.chdir(weights.parent)
    names = {
        load_stage("face_vectors", given, CPU).model_name
        for given in (str(weights), weights.name, f"./{weights.name}", str(link))
    }
    assert names == {str(weights.resolve())}


def test_emotion(tiny_emotion_model: str, photo_face_boxes, photos: list[Image.Image]) -> None:
    stage = load_stage("emotion", tiny_emotion_model, CPU)
    boxes = [list(image_boxes) for image_boxes in photo_face_boxes]
    boxes[1] = [(-5.0, -5.0, 0.2, 0.3)]  # degenerate, partly outside: still one pixel
    results = stage.run(photos, boxes)
    assert [len(r) for r in results] == [len(b) for b in boxes]
    for emotion in (e for image_emotions in results for e in image_emotions):
        assert isinstance(emotion, Emotion)
        assert set(emotion.scores) == set(EMOTIONS)
        assert emotion.label == max(emotion.scores, key=emotion.scores.__getitem__)
        assert emotion.score == emotion.scores[emotion.label]
        assert sum(emotion.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert stage.run(photos, boxes) == results


@pytest.mark.parametrize("stage", ["caption", "tags", "clip", "emotion", "face_vectors", "text"])
def test_half_precision(
    stage: str, tiny_models: dict[str, str], photos: list[Image.Image], photo_face_boxes
) -> None:
    """The fp16 path that CUDA takes by default, run on the CPU."""
    loaded = load_stage(stage, tiny_models[stage], CPU, dtype=torch.float16)
    if stage == "text":
        vectors = loaded.encode(["a dog playing in the snow"])
        reference = load_stage(stage, tiny_models[stage], CPU).encode(["a dog playing in the snow"])
        np.testing.assert_allclose(vectors, reference, atol=2e-3)
    elif stage == "clip":
        assert_unit_rows(loaded.encode_images(photos), loaded.dims)
        assert_unit_rows(loaded.encode(["a cat"]), loaded.dims)
    elif stage in ("emotion", "face_vectors"):
        results = loaded.run(photos, photo_face_boxes)
        assert [len(r) for r in results] == [len(b) for b in photo_face_boxes]
    else:
        assert len(loaded.run(photos)) == len(photos)


# --- text (real MiniLM) ------------------------------------------------------------------


def test_minilm_vectors(text_encoder) -> None:
    assert text_encoder.dims == 384
    assert text_encoder.model_name == DEFAULT_MODELS["text"]
    vectors = text_encoder.encode(
        ["a dog playing in the snow", "a puppy in snow", "a spreadsheet of quarterly revenue"]
    )
    assert_unit_rows(vectors, 384)
    dog, puppy, spreadsheet = vectors
    assert dog @ puppy > dog @ spreadsheet + 0.3
    assert text_encoder.encode([]).shape == (0, 384)
    assert text_encoder.encode(["long " * 1000]).shape == (1, 384)  # truncated, not an error


def test_minilm_matches_sentence_transformers(text_encoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["a dog playing in the snow", "Grace Hopper in uniform", "word " * 400]
    reference = sentence_transformers.SentenceTransformer(DEFAULT_MODELS["text"], device="cpu")
    expected = reference.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(text_encoder.encode(texts), expected, atol=1e-5)


def test_batching_does_not_change_text_vectors(text_encoder) -> None:
    texts = ["short", "a much longer sentence about a red bicycle leaning on a wall"]
    together = text_encoder.encode(texts)
    apart = np.concatenate([text_encoder.encode([text]) for text in texts])
    np.testing.assert_allclose(together, apart, atol=1e-5)


# --- failures ----------------------------------------------------------------------------


def assert_names(error: ModelLoadError, stage: str, model: str) -> None:
    message = str(error)
    assert stage in message
    assert model in message
    assert f"SEMSQL_MODEL_{stage.upper()}" in message
    assert error.stage == stage and error.model == model


def test_missing_folder(tmp_path: Path) -> None:
    model = str(tmp_path / "no-such-blip")
    with pytest.raises(ModelLoadError, match="does not exist") as caught:
        load_stage("caption", model, CPU)
    assert_names(caught.value, "caption", model)
    assert "save_pretrained" in str(caught.value)


def test_hub_id_with_no_network_says_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) on loopback refuses at once: the hub is "unreachable" on any machine.
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    model = "semsql-tests/no-such-model"
    with pytest.raises(ModelLoadError, match="unreachable") as caught:
        load_stage("clip", model, CPU)
    assert_names(caught.value, "clip", model)


def test_the_callers_hub_settings_do_not_change_the_tests() -> None:
    """An offline user's HF_HUB_OFFLINE=1 once made the test above fail (tests/fix_env.py)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    test = f"{Path(__file__).name}::test_hub_id_with_no_network_says_unreachable"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    done = subprocess.run(
        command, cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed" in done.stdout


def test_hub_id_with_hub_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE") as caught:
        load_stage("emotion", "semsql-tests/no-such-model", CPU)
    assert_names(caught.value, "emotion", "semsql-tests/no-such-model")


@pytest.mark.parametrize(
    ("stage", "other"),
    [("caption", "clip"), ("clip", "caption"), ("tags", "emotion"), ("emotion", "tags")],
)
def test_wrong_architecture(stage: str, other: str, tiny_models: dict[str, str]) -> None:
    with pytest.raises(ModelLoadError, match="wrong architecture") as caught:
        load_stage(stage, tiny_models[other], CPU)
    assert_names(caught.value, stage, tiny_models[other])


def test_text_refuses_a_model_that_is_not_a_text_encoder(tiny_clip_model: str) -> None:
    with pytest.raises(ModelLoadError, match="not a text encoder"):
        load_stage("text", tiny_clip_model, CPU)


def test_folder_without_weights(tiny_emotion_model: str, tmp_path: Path) -> None:
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_bytes(Path(tiny_emotion_model, name).read_bytes())
    with pytest.raises(ModelLoadError, match="missing or unreadable files") as caught:
        load_stage("emotion", str(tmp_path), CPU)
    assert_names(caught.value, "emotion", str(tmp_path))


def test_face_vector_weights_must_be_an_inception_resnet(
    tiny_emotion_model: str, tmp_path: Path
) -> None:
    not_facenet = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, not_facenet)
    with pytest.raises(ModelLoadError, match="not an InceptionResnetV1 state_dict"):
        load_stage("face_vectors", str(not_facenet), CPU)
    with pytest.raises(ModelLoadError, match="no such file") as caught:
        load_stage("face_vectors", str(tmp_path / "missing.pt"), CPU)
    assert_names(caught.value, "face_vectors", str(tmp_path / "missing.pt"))


def test_only_mtcnn_detects_faces() -> None:
    with pytest.raises(ModelLoadError, match="MTCNN"):
        load_stage("faces", "retinaface", CPU)


def test_load_stages_keeps_going_past_failures(tiny_emotion_model: str, tmp_path: Path) -> None:
    loaded = load_stages(
        {"emotion": tiny_emotion_model, "caption": str(tmp_path / "missing"), "tags": None}, CPU
    )
    assert set(loaded.stages) == {"emotion"}
    assert set(loaded.errors) == {"caption"}
    assert loaded.off == ["tags"]


def test_model_load_error_survives_pickling() -> None:
    error = ModelLoadError("tags", "facebook/detr-resnet-50", "hub unreachable")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert copy.env_var == "SEMSQL_MODEL_TAGS"
