"""Face vectors from dlib: its ResNet face encoder (128-d, 99.38 % on LFW) on aligned crops.

The weights ship in the `face-recognition-models` package, so this backend works offline.
Each stored MTCNN box is given to dlib's 5-point landmark predictor (as the dlib.rectangle
dlib's detector would draw there); dlib.get_face_chips aligns each face to a 150 px chip with
25 % padding, as compute_face_descriptor(image, shape) does inside.

The chips are encoded by DlibResNet, dlib's network in torch with the weights read from dlib's
own .dat file: dlib-bin's compute_face_descriptor runs on one core without BLAS (about 9
faces/s) and holds the GIL; the same network in torch encodes 130 to 150 chips/s on one or two
cores, and its descriptors differ from dlib's by less than 1e-6 (tests/test_dlib_faces.py
compares them).

Storage: faces.embedding and person_faces.embedding are vector(512). The 128-d descriptors
are unit-normalised and zero-padded to 512: the zeros add nothing to a dot product or a norm,
so every cosine distance is exactly that of the 128-d vectors, and the HNSW indexes and SQL
functions stay as they are. Faces of different models are never compared (the model columns).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL.Image import Image

from .base import Box
from .errors import ModelLoadError
from .images import as_rgb, check_boxes, chunks, per_image

MODEL_NAME = "dlib"
PACKAGE = "face_recognition_models"
ENCODER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_DIMS = 128
STORED_DIMS = 512
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# dlib's input_rgb_image: (pixel - mean) / 256, per channel R, G, B.
PIXEL_MEAN = (122.782, 117.001, 104.298)
PIXEL_SCALE = 256.0
# The residual blocks of dlib's face encoder (dnn_face_recognition_ex.cpp), input side first:
# (input channels, output channels, downsampling).
BLOCKS: tuple[tuple[int, int, bool], ...] = (
    *[(32, 32, False)] * 3,
    (32, 64, True),
    *[(64, 64, False)] * 3,
    (64, 128, True),
    *[(128, 128, False)] * 2,
    (128, 256, True),
    *[(256, 256, False)] * 2,
    (256, 256, True),
)


class DlibFaceVectorStage:
    stage = "face_vectors"
    dims = STORED_DIMS

    def __init__(
        self,
        landmarks: Any,
        encoder: DlibResNet,
        device: torch.device,
        model_name: str = MODEL_NAME,
        max_batch: int = 64,
    ) -> None:
        self.model_name = model_name
        self.landmarks = landmarks
        self.encoder = encoder
        self.device = device
        self.max_batch = max_batch

    def run(
        self, images: Sequence[Image], boxes: Sequence[Sequence[Box]]
    ) -> list[list[np.ndarray]]:
        check_boxes(images, boxes)
        chips = [
            chip
            for image, image_boxes in zip(images, boxes, strict=True)
            for chip in self.chips(image, image_boxes)
        ]
        return per_image(self._encode(chips), boxes)

    def chips(self, image: Image, boxes: Sequence[Box]) -> list[np.ndarray]:
        """The aligned 150 x 150 RGB chip of each face box."""
        import dlib

        if not boxes:
            return []
        pixels = np.ascontiguousarray(np.asarray(as_rgb(image), dtype=np.uint8))
        shapes = dlib.full_object_detections()
        for box in boxes:
            shapes.append(self.landmarks(pixels, _rectangle(box)))
        return list(dlib.get_face_chips(pixels, shapes, size=CHIP_SIZE, padding=CHIP_PADDING))

    def _encode(self, chips: list[np.ndarray]) -> np.ndarray:
        stored = np.zeros((len(chips), STORED_DIMS), dtype=np.float32)
        row = 0
        for batch in chunks(chips, self.max_batch):
            pixels = torch.from_numpy(np.stack(list(batch))).permute(0, 3, 1, 2)
            with torch.inference_mode():
                descriptors = self.encoder(pixels.to(self.device, torch.float32))
                unit = F.normalize(descriptors, dim=1).cpu().numpy()
            stored[row : row + len(batch), :DESCRIPTOR_DIMS] = unit
            row += len(batch)
        return stored


class DlibResNet(torch.nn.Module):
    """dlib's face encoder (a ResNet-29 on 150 px chips) with its weights, in torch.

    As dlib computes it: convolutions that downsample have no padding, a downsampling block's
    shortcut is a 2 x 2 average pool of its input, and dlib's add_prev adds tensors of
    different sizes by padding the smaller with zeros at the end (more channels, and the 3 x 3
    block output beside its 4 x 4 shortcut).
    """

    def __init__(self, tensors: Sequence[np.ndarray]) -> None:
        super().__init__()
        weights = iter(tensors)
        # Flat, input side first: the stem's conv and affine (4), then 8 per block.
        params = _conv(next(weights), 32, 3, 7) + _affine(next(weights))
        for channels_in, channels, _ in BLOCKS:
            for conv_in in (channels_in, channels):
                params += _conv(next(weights), channels, conv_in, 3) + _affine(next(weights))
        fc = next(weights)  # dlib's fc_no_bias multiplies x (n, 256) by W (256, 128)
        params.append(_parameter(fc.reshape(256, DESCRIPTOR_DIMS).T))
        params.append(_parameter(np.array(PIXEL_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)))
        self.params = torch.nn.ParameterList(params)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        p = list(self.params)
        x = (pixels - p[-1]) / PIXEL_SCALE
        x = F.max_pool2d(F.relu(F.conv2d(x, p[0], p[1], stride=2) * p[2] + p[3]), 3, 2)
        for number, (_, _, down) in enumerate(BLOCKS):
            w1, b1, g1, e1, w2, b2, g2, e2 = p[4 + 8 * number : 12 + 8 * number]
            stride, padding = (2, 0) if down else (1, 1)
            y = F.relu(F.conv2d(x, w1, b1, stride=stride, padding=padding) * g1 + e1)
            y = F.conv2d(y, w2, b2, padding=1) * g2 + e2
            x = F.relu(_add_padded(y, F.avg_pool2d(x, 2, 2) if down else x))
        descriptors: torch.Tensor = x.mean(dim=(2, 3)) @ p[-2].T
        return descriptors


def _conv(flat: np.ndarray, out: int, into: int, size: int) -> list[torch.nn.Parameter]:
    """dlib's con_ params: the filters (out, in, rows, cols), then one bias per filter."""
    filters = out * into * size * size
    return [
        _parameter(flat[:filters].reshape(out, into, size, size)),
        _parameter(flat[filters:]),
    ]


def _affine(flat: np.ndarray) -> list[torch.nn.Parameter]:
    """dlib's affine_ params (batch norm folded in): gamma, then beta, one per channel."""
    half = len(flat) // 2
    return [
        _parameter(flat[:half].reshape(1, half, 1, 1)),
        _parameter(flat[half:].reshape(1, half, 1, 1)),
    ]


def _parameter(array: np.ndarray) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.from_numpy(array.copy()), requires_grad=False)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    size = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True)]

    def padded(t: torch.Tensor) -> torch.Tensor:
        channels, rows, cols = t.shape[1:]
        return F.pad(t, (0, size[2] - cols, 0, size[1] - rows, 0, size[0] - channels))

    return padded(a) + padded(b)


def encoder_tensor_shapes() -> list[tuple[int, ...]]:
    """The shape of each params tensor of dlib's face encoder, in the order its .dat holds
    them (input side first): con_ (count, 1, 1, 1), affine_ (2 x channels, 1, 1, 1), then
    fc (256, 128, 1, 1)."""
    shapes: list[tuple[int, ...]] = [(32 * 3 * 7 * 7 + 32, 1, 1, 1), (64, 1, 1, 1)]
    for channels_in, channels, _ in BLOCKS:
        for conv_in in (channels_in, channels):
            shapes += [(channels * conv_in * 9 + channels, 1, 1, 1), (2 * channels, 1, 1, 1)]
    return [*shapes, (256, DESCRIPTOR_DIMS, 1, 1)]


def read_encoder_tensors(path: Path) -> list[np.ndarray]:
    """The params tensors of dlib's face encoder from its .dat file.

    dlib serialises a tensor as the int 2 (its format version), its four dimensions as dlib
    ints (a byte giving the length, then little-endian bytes), and its values as raw
    little-endian float32. Each expected shape is found in turn after the previous tensor.
    """
    data = path.read_bytes()
    tensors: list[np.ndarray] = []
    position = 0
    for shape in encoder_tensor_shapes():
        header = _dlib_int(2) + b"".join(_dlib_int(n) for n in shape)
        found = data.find(header, position)
        count = int(np.prod(shape))
        start = found + len(header)
        if found < 0 or start + 4 * count > len(data):
            raise ValueError(
                f"{path} is not dlib's face encoder: no params tensor of shape {shape} "
                f"after byte {position}"
            )
        values = np.frombuffer(data, dtype="<f4", count=count, offset=start)
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: the tensor of shape {shape} at byte {found} is not finite")
        tensors.append(values.astype(np.float32))
        position = start + 4 * count
    return tensors


def _dlib_int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "little")
    return bytes([len(raw)]) + raw


def _rectangle(box: Box) -> Any:
    """The dlib.rectangle that dlib's own face detector would draw around an MTCNN face box.

    The 5-point predictor was trained on dlib's boxes: square, about as wide as MTCNN's and
    from under the brow to the chin, where MTCNN's run from the forehead. On the sample faces
    dlib's box is centred at 53 % of MTCNN's height with a side of 1.04 x its width or 0.82 x
    its height; given MTCNN's box as is, the landmarks slip on a brightened face and its vector
    moves (similarity 0.91 to the original instead of 0.98).
    """
    import dlib

    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    side = (1.04 * width + 0.82 * height) / 2
    centre_x, centre_y = (x0 + x1) / 2, y0 + 0.53 * height
    left, top = round(centre_x - side / 2), round(centre_y - side / 2)
    return dlib.rectangle(left, top, left + max(round(side), 1), top + max(round(side), 1))


def weights_folder() -> Path | None:
    """The folder of face_recognition_models' .dat files, found without importing it (its
    __init__ imports pkg_resources)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models"


def load_dlib_face_vectors(device: torch.device, **options: Any) -> DlibFaceVectorStage:
    """dlib finds the landmarks and aligns the faces on the CPU; the encoder runs on `device`
    (in float32 whatever the device: it is small)."""
    try:
        import dlib
    except ImportError as exc:
        raise ModelLoadError(
            "face_vectors", MODEL_NAME, f"dlib is not installed ({exc})", fix=_fix()
        ) from exc
    folder = weights_folder()
    if folder is None:
        raise ModelLoadError(
            "face_vectors", MODEL_NAME, f"the {PACKAGE} package is not installed", fix=_fix()
        )
    files = {name: folder / name for name in (LANDMARKS_FILE, ENCODER_FILE)}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ModelLoadError(
            "face_vectors", MODEL_NAME, f"missing weights: {', '.join(missing)}", fix=_fix()
        )
    try:
        landmarks = dlib.shape_predictor(str(files[LANDMARKS_FILE]))
        encoder = DlibResNet(read_encoder_tensors(files[ENCODER_FILE]))
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            "face_vectors", MODEL_NAME, f"its weights cannot be read ({exc})", fix=_fix()
        ) from exc
    return DlibFaceVectorStage(landmarks, encoder.eval().to(device), device, **options)


def _fix() -> str:
    return (
        "pip install dlib-bin face-recognition-models (both in semsql[models]), "
        "or SEMSQL_MODEL_FACE_VECTORS=vggface2"
    )
