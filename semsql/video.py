"""Videos: what a container says it holds (probe), and the frames worth looking at (sampling).

Probing reads the container's header and decodes two frames, the first and one near the end, so
a truncated or corrupt file is caught without decoding the whole of it. Sampling decodes the
video stream once, in FFmpeg's threads, and picks frames by their timestamps (never index x fps,
which is wrong for variable frame rates): one every `every` seconds and one at each scene cut,
dropping black, flat and repeated frames, up to a cap. Each decoded frame is compared with the
previous one on a 32x18 grey thumbnail; only the frames kept are converted to RGB.

PyAV (the `video` extra: `pip install 'semsql[video]'`) bundles FFmpeg; nothing else is needed.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from semsql.probe import sniff

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

NEEDS_EXTRA = "videos need the video extra: pip install 'semsql[video]'"

Source = Path | bytes
MAX_FRAME_PIXELS = 8192 * 4320  # 8K: past it a frame is a decompression bomb, not footage


_ATTACHED_PICTURE = 0x400  # AV_DISPOSITION_ATTACHED_PIC: a cover image, not footage


class VideoError(Exception):
    """Why a video cannot be used. `code` is stable and machine-readable; `message` is for
    people."""

    CODES = frozenset(
        {
            "empty",
            "not_a_video",
            "no_video_stream",
            "truncated",
            "undecodable",
            "too_long",
            "too_many_pixels",
        }
    )

    def __init__(self, code: str, message: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown video error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    frame_rate: float | None  # the stream's average; None when the container does not say
    codec: str
    width: int  # as stored, before `rotation`
    height: int
    rotation: int  # degrees clockwise a player turns the picture: 0, 90, 180 or 270
    created_at: datetime | None
    container: str


@dataclass(frozen=True)
class SampledFrame:
    at_ms: int  # presentation time from the start of the video
    jpeg: bytes  # the frame, upright (the container's rotation applied), as a JPEG
    size: tuple[int, int]  # its width and height
    scene_cut: bool  # kept because the picture changed, not because its time had come

    @property
    def image(self) -> Image.Image:
        """The frame decoded (RGB). Kept frames are held as JPEGs: 120 frames of 720p as RGB
        are 330 MB, as JPEGs about 15 MB."""
        with Image.open(io.BytesIO(self.jpeg)) as opened:
            return opened.convert("RGB")


JPEG_QUALITY = 90  # the models see what the video showed, not the JPEG's blocks


@dataclass(frozen=True)
class Sampling:
    """How frames are chosen. Defaults: a frame every 2 s catches each shot of edited video
    (median shot length 2-5 s) at about 1/60 of a 30 fps stream's frames; scene cuts add the
    short shots between; 120 frames cap a long video at a few minutes of model time."""

    every: float = 2.0  # seconds between regular samples
    max_frames: int = 120
    scene_cut: float = 0.12  # mean absolute change of the grey thumbnail, 0..1
    repeat: float = 0.02  # a frame closer than this to the last one kept adds nothing
    black: float = 0.06  # mean brightness below this is a black frame
    flat: float = 0.015  # brightness spread below this is a flat (single-colour) frame
    max_side: int = 1280  # kept frames are scaled down to this long side
    # Samples further apart than this seek to the keyframe before each one instead of decoding
    # every frame (no scene cuts then): encoders put a keyframe every 2-10 s.
    seek_above: float = 8.0


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ImportError(NEEDS_EXTRA) from None
    return av


def video_available() -> bool:
    try:
        _av()
    except ImportError:
        return False
    return True


def _open(source: Source) -> InputContainer:
    av = _av()
    if isinstance(source, bytes):
        head = source[:1024]
        file: Any = io.BytesIO(source)
    else:
        with source.open("rb") as opened:
            head = opened.read(1024)
        file = str(source)
    if not head:
        raise VideoError("empty", "file is 0 bytes")
    try:
        container: InputContainer = av.open(file, metadata_errors="ignore")
    except av.error.FFmpegError as error:
        kind, name = sniff(head)
        if kind == "video":
            raise VideoError(
                "truncated", f"the {name} container cannot be read, cut short or corrupt ({error})"
            ) from None
        raise VideoError("not_a_video", f"not a video container ({name})") from None
    return container


def _video_stream(container: InputContainer) -> VideoStream:
    if not container.streams.video:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoError(
            "no_video_stream", f"the container has no video stream ({', '.join(kinds)})"
        )
    # The main one: a preview track or a cover picture may come first.
    stream = max(
        container.streams.video,
        key=lambda s: (
            not s.disposition & _ATTACHED_PICTURE,
            (s.codec_context.width or 0) * (s.codec_context.height or 0),
        ),
    )
    if stream.codec_context is None or not stream.codec_context.codec.name:
        raise VideoError("undecodable", "the video stream's codec is not known to FFmpeg")
    return stream


def _duration(container: InputContainer, stream: VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return _demuxed_duration(container, stream)


def _demuxed_duration(container: InputContainer, stream: VideoStream) -> float:
    """For a container that does not say (a live WebM recording): how far its packets' times
    go, read (not decoded) from the start; the container is back at its start after."""
    ends = [shown + length for shown, length in _packet_times(container, stream)]
    container.seek(0, stream=stream, backward=True)
    return max(0.0, max(ends, default=0.0))


def _packet_times(container: InputContainer, stream: VideoStream) -> Iterator[tuple[float, float]]:
    """When each packet of the stream is shown and for how long, in seconds from the stream's
    start, read (not decoded) from the start of the container."""
    av = _av()
    base = stream.time_base
    if base is None:
        return
    start = _start(stream)
    try:
        container.seek(0, stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None:
                yield float(packet.pts * base) - start, float((packet.duration or 0) * base)
    except av.error.FFmpegError as error:
        raise VideoError("truncated", f"the packets do not read: {error}") from None


def _rotation(first: VideoFrame) -> int:
    # FFmpeg reports the display matrix's angle counter-clockwise; players turn clockwise.
    angle = getattr(first, "rotation", 0) or 0
    return int(-angle) % 360


def _created_at(container: InputContainer) -> datetime | None:
    text = container.metadata.get("creation_time")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _first_frame(container: InputContainer, stream: VideoStream) -> VideoFrame:
    av = _av()
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as error:
        raise VideoError("undecodable", f"the first frame does not decode: {error}") from None
    raise VideoError("truncated", "the video stream holds no frame")


def _start(stream: VideoStream) -> float:
    """When the stream's first frame is shown, in seconds: 0 in MP4, often 1.4 s in MPEG-TS.
    Times semsql stores count from it."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _check_end(container: InputContainer, stream: VideoStream, duration: float) -> None:
    """Decode a frame near the end: a file cut short has its index but not its last frames."""
    av = _av()
    if duration <= 1 or stream.time_base is None:
        return
    target = duration - min(1.0, duration / 4)
    start, base = _start(stream), stream.time_base
    try:
        container.seek(int((start + target) / base), stream=stream, backward=True)
        decoded = False
        for frame in container.decode(stream):
            decoded = True
            if frame.time is not None and frame.time - start >= target - 0.001:
                return
        # Nothing after the seek: a stream without an index (MPEG-TS, MPEG-PS) can land past
        # the keyframe a decoder needs. Its packets' times still say how far it goes.
        if not decoded and any(
            shown >= target - 0.001 for shown, _ in _packet_times(container, stream)
        ):
            return
    except av.error.FFmpegError as error:
        raise VideoError("truncated", f"the frames near the end do not decode: {error}") from None
    raise VideoError(
        "truncated",
        f"the container says {duration:.1f} s but the frames stop before {target:.1f} s",
    )


def probe_video(
    source: Source, *, max_duration: float | None = None, max_pixels: int = MAX_FRAME_PIXELS
) -> VideoInfo:
    """What the video is, from its container and two decoded frames; VideoError says why not."""
    with _open(source) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise VideoError(
                "too_many_pixels", f"frames of {width}x{height} are over {max_pixels} pixels"
            )
        duration = _duration(container, stream)
        if max_duration is not None and duration > max_duration:
            raise VideoError(
                "too_long",
                f"the video lasts {duration:.0f} s, over --max-duration {max_duration:g} s",
            )
        stream.thread_type = "AUTO"
        first = _first_frame(container, stream)
        _check_end(container, stream, duration)
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            duration=duration,
            frame_rate=float(rate) if isinstance(rate, Fraction) and rate > 0 else None,
            codec=stream.codec_context.codec.name,
            width=width,
            height=height,
            rotation=_rotation(first),
            created_at=_created_at(container),
            container=container.format.name,
        )


# 8-bit formats whose first plane is the luma (brightness) at full size.
_LUMA_FIRST = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12"}
)
_THUMB_ROWS, _THUMB_COLUMNS = 18, 32


def _thumbnail(frame: VideoFrame) -> np.ndarray:
    """18x32 brightness in 0..1: block means of every 4th luma sample (a rescale of the whole
    frame would cost as much as decoding it), or a rescale for other pixel formats."""
    small = frame.height < 4 * _THUMB_ROWS or frame.width < 4 * _THUMB_COLUMNS
    if frame.format.name not in _LUMA_FIRST or small:
        grey = frame.reformat(width=_THUMB_COLUMNS, height=_THUMB_ROWS, format="gray")
        return grey.to_ndarray().astype(np.float32) / 255.0
    plane = frame.planes[0]
    luma = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[
        : frame.height, : frame.width
    ]
    sparse = luma[::4, ::4]
    rows, columns = sparse.shape[0] // _THUMB_ROWS, sparse.shape[1] // _THUMB_COLUMNS
    blocks = sparse[: rows * _THUMB_ROWS, : columns * _THUMB_COLUMNS].reshape(
        _THUMB_ROWS, rows, _THUMB_COLUMNS, columns
    )
    means: np.ndarray = blocks.mean(axis=(1, 3), dtype=np.float32)
    if frame.format.name.startswith("yuvj"):  # full range: 0..255
        return means / 255.0
    limited: np.ndarray = np.clip((means - 16.0) / 219.0, 0.0, 1.0)  # black 16, white 235
    return limited


def _change(thumb: np.ndarray, other: np.ndarray) -> float:
    return float(np.abs(thumb - other).mean())


def _upright(frame: VideoFrame, rotation: int, max_side: int) -> Image.Image:
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    turn = {
        90: Image.Transpose.ROTATE_270,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_90,
    }.get(rotation)
    return image.transpose(turn) if turn is not None else image


MAX_BAD_PACKETS = 50
"""Packets that do not decode, skipped as players skip them (a damaged frame costs that frame),
before the video counts as undecodable."""


def _decoded(container: InputContainer, stream: VideoStream) -> Iterator[tuple[float, VideoFrame]]:
    av = _av()
    start = _start(stream)
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise VideoError(
                        "undecodable", f"{bad} packets do not decode, the last: {error}"
                    ) from None
                continue
            for frame in frames:
                if frame.time is not None:
                    yield frame.time - start, frame
    except av.error.FFmpegError as error:  # the container itself: nothing more to read
        raise VideoError("undecodable", f"decoding stopped: {error}") from None


def sample_frames(source: Source, sampling: Sampling = Sampling()) -> list[SampledFrame]:
    """The frames worth giving to the image stages, in time order (see the module's docstring)."""
    with _open(source) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        duration = _duration(container, stream)
        every = max(sampling.every, duration / sampling.max_frames)
        candidates: Iterator[tuple[float, VideoFrame, bool]]
        if every < sampling.seek_above:
            candidates = ((at, frame, False) for at, frame in _decoded(container, stream))
        else:
            candidates = _near_each_due_time(container, stream, every, duration)
        return _select(candidates, sampling, every)


def _near_each_due_time(
    container: InputContainer, stream: VideoStream, every: float, end: float
) -> Iterator[tuple[float, VideoFrame, bool]]:
    """For samples far apart: seek to the keyframe before each due time and decode from there,
    up to a second past it (room to step over a black frame). The bool marks a new stretch."""
    if stream.time_base is None:
        return
    due = 0.0
    while due < end:
        container.seek(int((_start(stream) + due) / stream.time_base), stream=stream, backward=True)
        first = True
        for at, frame in _decoded(container, stream):
            if at + 1e-6 < due:
                continue
            if at > due + 1.0:
                break
            yield at, frame, first
            first = False
        due += every


def _select(
    candidates: Iterator[tuple[float, VideoFrame, bool]],
    sampling: Sampling,
    every: float,
) -> list[SampledFrame]:
    kept: list[SampledFrame] = []
    rotation: int | None = None
    previous: np.ndarray | None = None  # the frame before, for cuts
    last_kept: np.ndarray | None = None  # for repeats
    recent: deque[np.ndarray] = deque(maxlen=8)  # a cut back to one of these is no new shot
    next_due = 0.0
    for at, frame, new_stretch in candidates:
        if rotation is None:
            rotation = _rotation(frame)
        thumb = _thumbnail(frame)
        if new_stretch:
            previous, next_due = None, min(next_due, at)
        cut = previous is not None and _change(thumb, previous) > sampling.scene_cut
        previous = thumb
        if at + 1e-6 < next_due and not cut:
            continue
        if at + 1e-6 < next_due and any(_change(thumb, r) < sampling.repeat for r in recent):
            continue  # a cut back to a picture kept lately: flicker, or a shot/reverse shot
        if thumb.mean() < sampling.black or thumb.std() < sampling.flat:
            continue  # not kept, so the next frame is still due
        if last_kept is not None and _change(thumb, last_kept) < sampling.repeat:
            next_due = at + every
            continue
        image = _upright(frame, rotation, sampling.max_side)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        kept.append(SampledFrame(round(at * 1000), buffer.getvalue(), image.size, cut))
        last_kept, next_due = thumb, at + every
        recent.append(thumb)
        if len(kept) >= sampling.max_frames:
            break
    return kept
