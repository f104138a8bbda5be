"""Face vectors: facenet-pytorch's InceptionResnetV1 on 160x160 crops of the stored face boxes,
or dlib's face encoder (model name `dlib`, see dlib_faces)."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from facenet_pytorch import InceptionResnetV1, extract_face
from PIL.Image import Image

from semsql.people import FACENET_WEIGHTS, stored_model_name

from .base import Box
from .dlib_faces import MODEL_NAME as DLIB
from .dlib_faces import DlibFaceVectorStage, load_dlib_face_vectors
from .errors import ModelLoadError
from .images import as_rgb, check_boxes, chunks, per_image, unit_rows

DIMS = 512
CROP_SIZE = 160
# Where facenet-pytorch downloads its released weights from, and caches them.
RELEASES = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
DOWNLOAD_PROBE_TIMEOUT_S = 5.0


class FaceVectorStage:
    stage = "face_vectors"
    dims = DIMS

    def __init__(
        self,
        model_name: str,
        model: torch.nn.Module,
        device: torch.device,
        dtype: torch.dtype,
        max_batch: int = 64,
    ) -> None:
        self.model_name = model_name
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch

    def run(
        self, images: Sequence[Image], boxes: Sequence[Sequence[Box]]
    ) -> list[list[np.ndarray]]:
        check_boxes(images, boxes)
        crops = [
            extract_face(as_rgb(image), box, image_size=CROP_SIZE)
            for image, image_boxes in zip(images, boxes, strict=True)
            for box in image_boxes
        ]
        return per_image(self._embed(crops), boxes)

    def _embed(self, crops: list[torch.Tensor]) -> np.ndarray:
        if not crops:
            return np.zeros((0, DIMS), dtype=np.float32)
        parts = []
        for batch in chunks(crops, self.max_batch):
            # facenet's fixed_image_standardization: what MTCNN(post_process=True) feeds the model
            pixels = (torch.stack(list(batch)) - 127.5) / 128.0
            with torch.inference_mode():
                parts.append(unit_rows(self.model(pixels.to(self.device, self.dtype))))
        return np.concatenate(parts)


def load_face_vectors(
    model: str, device: torch.device, dtype: torch.dtype, **options: Any
) -> FaceVectorStage | DlibFaceVectorStage:
    """`dlib`, a released FaceNet name (vggface2, casia-webface), or a local .pt state_dict."""
    if model.strip().lower() == DLIB:
        return load_dlib_face_vectors(device, **options)
    weights = _weights_file(model)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(
            "face_vectors", model, f"{weights} is not a readable state_dict ({exc})", fix=_fix()
        ) from exc
    if not isinstance(state, dict):
        raise ModelLoadError(
            "face_vectors",
            model,
            f"{weights} holds a {type(state).__name__}, not a state_dict",
            fix=_fix(),
        )
    # The released files carry the training classifier ("logits.*"); embeddings do not use it.
    state = {key: value for key, value in state.items() if not key.startswith("logits.")}
    net = InceptionResnetV1(pretrained=None, classify=False)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes
        missing, unexpected = [_first_line(exc)], []
    if missing or unexpected:
        reason = (
            f"wrong architecture: {weights} is not an InceptionResnetV1 state_dict "
            f"({len(missing)} weights missing, {len(unexpected)} unexpected)"
        )
        raise ModelLoadError("face_vectors", model, reason, fix=_fix())
    net = net.eval().to(device, dtype)
    return FaceVectorStage(stored_model_name(model), net, device, dtype, **options)


def _weights_file(model: str) -> Path:
    """A local .pt path as given, or facenet's cached download of a released name."""
    name = model.lower()
    if name not in FACENET_WEIGHTS:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelLoadError(
                "face_vectors",
                model,
                f"no such file {path} (give a state_dict .pt file, {DLIB}, or one of "
                f"{', '.join(FACENET_WEIGHTS)})",
                fix=_fix(),
            )
        return path
    cached = _torch_home() / "checkpoints" / FACENET_WEIGHTS[name]
    if cached.is_file():
        return cached
    url = RELEASES + FACENET_WEIGHTS[name]
    try:
        # One bounded request first: facenet's own download has no timeout.
        cached.parent.mkdir(parents=True, exist_ok=True)
        urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=DOWNLOAD_PROBE_TIMEOUT_S
        ).close()
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except Exception as exc:
        raise ModelLoadError(
            "face_vectors",
            model,
            f"it is not downloaded yet ({cached}) and {url} is unreachable ({exc})",
            fix=f"copy {FACENET_WEIGHTS[name]} to {cached}, or {_fix()}",
        ) from exc
    return cached


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _torch_home() -> Path:
    # Same rule as facenet_pytorch.models.inception_resnet_v1.get_torch_home
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def _fix() -> str:
    return (
        f"set SEMSQL_MODEL_FACE_VECTORS={DLIB} (offline, from semsql[models]), to a local "
        "InceptionResnetV1 state_dict .pt file, or to off"
    )
