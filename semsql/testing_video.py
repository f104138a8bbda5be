"""Videos for tests and benchmarks, encoded with PyAV from still pictures: each part of a video
is one picture (or black) shown for some seconds, with a little motion so that encoders and the
sampler see real frames rather than one repeated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from semsql.video import _av


@dataclass(frozen=True)
class Part:
    seconds: float
    picture: Image.Image | None  # None: black


def _frame_pixels(
    part: Part, size: tuple[int, int], step: int | None, grain: np.random.Generator | None
) -> np.ndarray:
    width, height = size
    if part.picture is None:
        return np.zeros((height, width, 3), np.uint8)
    # A slow pan: the picture, slightly larger than the frame, drifts a pixel a frame and back.
    big = part.picture.convert("RGB").resize((width + 32, height + 32), Image.Resampling.BILINEAR)
    x = y = 16 if step is None else abs(step % 64 - 32)
    pixels = np.asarray(big)[y : y + height, x : x + width]
    if grain is None:
        return pixels
    # Sensor noise, as in camera footage: it costs the encoder bits and the decoder work.
    noise = grain.normal(0, 6, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def write_video(
    path: Path,
    parts: Sequence[Part],
    *,
    codec: str = "libx264",
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    variable_rate: bool = False,
    grain: bool = False,
    index_first: bool = False,
    still: bool = False,
    preset: str = "veryfast",
) -> Path:
    """Encode `parts` one after another. With `variable_rate`, frame gaps alternate between
    1/fps and 3/fps (as phones write when the light is low), so frame index x fps is wrong;
    `grain` adds camera-like noise; `still` holds each picture without the pan; `index_first`
    writes an MP4's index (moov) before its frames, as files made for streaming have it."""
    av = _av()
    options = {"movflags": "faststart"} if index_first else {}
    noise = np.random.default_rng(0) if grain else None
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        if codec == "libx264":
            stream.options = {"preset": preset}
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        tick = Fraction(1, fps * 3)
        stream.time_base = stream.codec_context.time_base = tick
        ticks = 0
        step = 0
        for part in parts:
            end = ticks + round(part.seconds * fps * 3)
            while ticks < end:
                frame = av.VideoFrame.from_ndarray(
                    _frame_pixels(part, size, None if still else step, noise), format="rgb24"
                )
                frame.pts, frame.time_base = ticks, tick
                for packet in stream.encode(frame):
                    container.mux(packet)
                ticks += 9 if variable_rate and step % 2 else 3
                step += 1
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """A container with one audio stream (silence) and no video."""
    av = _av()
    rate = 48_000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = 1024
        for start in range(0, int(seconds * rate), samples):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, samples), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
