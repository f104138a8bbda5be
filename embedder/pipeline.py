"""A claimed batch through its stage: inputs read, model run, failures kept to their own task.

`prepare` runs on the worker's thread and only starts work: images decode (semsql/decode.py) in a
thread pool, so that they are ready by the time the model has finished the batch before.
`run` waits for them, runs the model on the whole batch, and when the batch raises, runs its
items one by one so that one poison image fails alone. `write` stores the results inside the
transaction that completes their tasks.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import torch
from PIL import Image

from semsql.decode import Decoded, InputError, decode_bytes, default_root, load_image
from semsql.stages import Stage
from semsql.video import SampledFrame

from . import frames as video_frames
from .queue import Failure, Task


class TransientError(Exception):
    """The whole batch should be retried later (out of GPU memory, ...)."""


@dataclass
class StageStats:
    batches: int = 0
    items: int = 0
    failed: int = 0
    claim_s: float = 0.0  # claiming, and reading inputs from the database
    decode_s: float = 0.0  # summed over the decoding threads
    decode_wait_s: float = 0.0  # how long the model waited for them
    model_s: float = 0.0
    write_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class Batch:
    stage: str
    tasks: list[Task]
    inputs: dict[int, Any] = field(default_factory=dict)
    deferred: list[Task] = field(default_factory=list)
    """Claimed but left for a later batch (the worker gives them back): videos past the
    batch's share of frames."""


MAX_FRAMES_IN_FLIGHT = 240
"""Decoded pictures one batch holds at most, beyond its first task: a batch of 16 videos of
120 frames each would hold 1,920 (5 GB at 720p); 240 is at most 660 MB, less at a stage's
own size."""


def _within_frame_budget(
    tasks: list[Task], pictures: dict[int, int]
) -> tuple[list[Task], list[Task]]:
    """The tasks a batch takes, in order, while their pictures (by task id; 1 where not
    given) stay within MAX_FRAMES_IN_FLIGHT, and those it leaves for later; the first is
    always taken."""
    taken: list[Task] = []
    deferred: list[Task] = []
    held = 0
    for task in tasks:
        count = pictures.get(task.id, 1)
        if taken and held + count > MAX_FRAMES_IN_FLIGHT:
            deferred.append(task)
        else:
            taken.append(task)
            held += count
    return taken, deferred


@dataclass
class Outcome:
    results: dict[int, Any] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)


def _timed_load(task: Task, max_side: int, mode: str = "RGB") -> tuple[Decoded, float]:
    """The task's image, read only beneath its asset's root and only if it is what was
    ingested (decode.load_image)."""
    started = time.perf_counter()
    root = task.root or default_root(task.uri)
    decoded = load_image(
        task.uri, max_side, root=root, sha256=task.sha256, size=task.bytes, mode=mode
    )
    return decoded, time.perf_counter() - started


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:1000]


class Runner:
    """One stage: a loaded model, how to feed it, and where its results go."""

    def __init__(
        self,
        spec: Stage,
        model: Any,
        write: Callable[..., None],
        lock: threading.Lock | None = None,
    ) -> None:
        self.spec = spec
        self.stage = spec.name
        self.model = model
        self.model_name: str = model.model_name
        self.write_results = write
        # Held around model calls; shared with the query answerer where it uses the same model.
        self.lock = lock or threading.Lock()
        self.stats = StageStats()

    def prepare(self, conn: psycopg.Connection, tasks: list[Task]) -> Batch:
        raise NotImplementedError

    def run(self, batch: Batch) -> Outcome:
        raise NotImplementedError

    def write(self, conn: psycopg.Connection, done: list[tuple[Task, Any]]) -> None:
        self.write_results(conn, self.model_name, done)

    def _isolated(
        self, call: Callable[[list[Any]], list[Any]], items: list[tuple[int, Any]]
    ) -> Outcome:
        """Run the batch; if it raises, each item alone, so that only the culprits fail."""
        if not items:
            return Outcome()
        started = time.perf_counter()
        try:
            with self.lock:
                return self._outcome(items, call([item for _, item in items]))
        except Exception as error:
            if is_transient(error):
                raise TransientError(describe(error)) from error
            if len(items) == 1:
                return Outcome(failures=[self._model_failure(items[0][0], error)])
        finally:
            self.stats.model_s += time.perf_counter() - started
        outcome = Outcome()
        for task_id, item in items:
            started = time.perf_counter()
            try:
                with self.lock:
                    outcome.results[task_id] = call([item])[0]
            except Exception as error:
                if is_transient(error):
                    raise TransientError(describe(error)) from error
                outcome.failures.append(self._model_failure(task_id, error))
            finally:
                self.stats.model_s += time.perf_counter() - started
        return outcome

    def _outcome(self, items: list[tuple[int, Any]], outputs: Sequence[Any]) -> Outcome:
        if len(outputs) != len(items):
            raise RuntimeError(f"{self.stage} model gave {len(outputs)} results for {len(items)}")
        return Outcome(results={task_id: out for (task_id, _), out in zip(items, outputs)})  # noqa: B905

    def _model_failure(self, task_id: int, error: BaseException) -> Failure:
        return Failure(
            task_id,
            f"{self.stage} model {self.model_name} failed: {describe(error)}",
            permanent=True,
        )


class ImageRunner(Runner):
    """Stages that read the image (caption, tags, faces, clip): one model output per image;
    results are (output, scale), and for a video FrameResults, one per frame it reads."""

    def __init__(
        self,
        spec: Stage,
        model: Any,
        write: Callable[..., None],
        pool: ThreadPoolExecutor,
        lock: threading.Lock | None = None,
        write_frames: Callable[..., None] | None = None,
    ) -> None:
        super().__init__(spec, model, write, lock)
        self.pool = pool
        self.write_frame_results = write_frames

    def prepare(self, conn: psycopg.Connection, tasks: list[Task]) -> Batch:
        side, mode = self.spec.image_side, self.spec.image_mode
        videos = video_frames.of_videos(conn, tasks, self.spec.frames_per_video)
        counts = {t.id: len(videos[t.asset_id]) for t in tasks if t.asset_id in videos}
        taken, deferred = _within_frame_budget(tasks, counts)
        inputs: dict[int, Any] = {}
        for task in taken:
            frames = videos.get(task.asset_id)
            if frames is None:
                inputs[task.id] = self.pool.submit(_timed_load, task, side, mode)
            else:
                inputs[task.id] = (frames, self.pool.submit(_timed_frames, frames, side, mode))
        return Batch(self.stage, taken, inputs, deferred)

    def run(self, batch: Batch) -> Outcome:
        decoded, failures = self._gather(batch)
        items = [(i, [d.image for d in found]) for i, found in decoded.items()]
        outcome = self._isolated(_per_item(self.model.run), items)
        results: dict[int, Any] = {}
        for task_id, outputs in outcome.results.items():
            found = decoded[task_id]
            pairs = [(out, d.scale) for out, d in zip(outputs, found, strict=True)]
            given = batch.inputs[task_id]
            if isinstance(given, tuple):  # a video: its frames
                frame_ids = [frame.id for frame in given[0]]
                results[task_id] = video_frames.FrameResults(
                    list(zip(frame_ids, pairs, strict=True))
                )
            else:
                results[task_id] = pairs[0]
        return Outcome(results, failures + outcome.failures)

    def write(self, conn: psycopg.Connection, done: list[tuple[Task, Any]]) -> None:
        of_frames = [(t, r) for t, r in done if isinstance(r, video_frames.FrameResults)]
        of_images = [(t, r) for t, r in done if not isinstance(r, video_frames.FrameResults)]
        if of_images:
            self.write_results(conn, self.model_name, of_images)
        if of_frames:
            if self.write_frame_results is None:
                raise RuntimeError(f"the {self.stage} stage has no writer for video frames")
            self.write_frame_results(conn, self.model_name, of_frames)

    def _gather(self, batch: Batch) -> tuple[dict[int, list[Decoded]], list[Failure]]:
        """Each task's images (one, or a video's frames) as the decoding threads left them."""
        decoded: dict[int, list[Decoded]] = {}
        failures: list[Failure] = []
        started = time.perf_counter()
        for task_id, given in batch.inputs.items():
            future = given[1] if isinstance(given, tuple) else given
            if not isinstance(future, Future):
                continue
            try:
                result, seconds = future.result()
                decoded[task_id] = result if isinstance(result, list) else [result]
                self.stats.decode_s += seconds
            except InputError as error:
                failures.append(Failure(task_id, str(error), error.permanent))
        self.stats.decode_wait_s += time.perf_counter() - started
        return decoded, failures


class FaceRunner(ImageRunner):
    """Stages that read the stored faces (face_vectors, emotion): one output per face; results
    are [(face id, output)]. A video's faces are read from the frames they were found in."""

    def prepare(self, conn: psycopg.Connection, tasks: list[Task]) -> Batch:
        faces: dict[int, list[tuple[int, list[float], int | None]]] = {}
        for face_id, asset_id, box, frame_id in conn.execute(
            """SELECT id, asset_id, box, frame_id FROM semsql.faces
               WHERE asset_id = ANY (%s) ORDER BY id""",
            [[task.asset_id for task in tasks]],
        ):
            faces.setdefault(asset_id, []).append((face_id, box, frame_id))
        frame_ids = sorted({f for found in faces.values() for _, _, f in found if f is not None})
        jpegs = video_frames.jpegs(conn, frame_ids)
        counts = {
            t.id: len({frame_id for _, _, frame_id in faces.get(t.asset_id, [])}) for t in tasks
        }
        taken, deferred = _within_frame_budget(tasks, counts)
        batch = Batch(self.stage, taken, deferred=deferred)
        side = self.spec.image_side
        for task in taken:
            # The faces of each picture they were found in: the image, or a frame of the video.
            groups: dict[int | None, list[tuple[int, list[float]]]] = {}
            for face_id, box, frame_id in faces.get(task.asset_id, []):
                groups.setdefault(frame_id, []).append((face_id, box))
            pictures = []
            for frame_id, found in groups.items():
                if frame_id is None:
                    future = self.pool.submit(_timed_load, task, side)
                elif frame_id in jpegs:
                    future = self.pool.submit(_timed_decode, jpegs[frame_id], side)
                else:
                    continue  # sampled again meanwhile: its faces went with it
                pictures.append((future, found))
            batch.inputs[task.id] = pictures
        return batch

    def run(self, batch: Batch) -> Outcome:
        items: list[tuple[int, list[tuple[Image.Image, list[list[float]]]]]] = []
        failures: list[Failure] = []
        results: dict[int, Any] = {}
        started = time.perf_counter()
        for task_id, pictures in batch.inputs.items():
            if not pictures:
                results[task_id] = []
                continue
            try:
                loaded = [(future.result(), found) for future, found in pictures]
            except InputError as error:
                failures.append(Failure(task_id, str(error), error.permanent))
                continue
            self.stats.decode_s += sum(seconds for (_, seconds), _ in loaded)
            items.append(
                (
                    task_id,
                    [
                        (image.image, [[v / image.scale for v in box] for _, box in found])
                        for (image, _), found in loaded
                    ],
                )
            )
        self.stats.decode_wait_s += time.perf_counter() - started
        outcome = self._isolated(_per_item(self._call), items)
        for task_id, outputs in outcome.results.items():
            face_ids = [face_id for _, found in batch.inputs[task_id] for face_id, _ in found]
            per_face = [out for picture in outputs for out in picture]
            results[task_id] = list(zip(face_ids, per_face, strict=True))
        return Outcome(results, failures + outcome.failures)

    def write(self, conn: psycopg.Connection, done: list[tuple[Task, Any]]) -> None:
        self.write_results(conn, self.model_name, done)

    def _call(self, items: list[tuple[Image.Image, list[list[float]]]]) -> list[Any]:
        outputs: list[Any] = self.model.run(
            [image for image, _ in items], [boxes for _, boxes in items]
        )
        return outputs


class VideoRunner(Runner):
    """The frames stage: each video decoded once in the decoding threads, its frames sampled
    (semsql.video, each kept as a JPEG); results are lists of video.SampledFrame."""

    def __init__(
        self,
        spec: Stage,
        model: Any,
        write: Callable[..., None],
        pool: ThreadPoolExecutor,
        lock: threading.Lock | None = None,
    ) -> None:
        super().__init__(spec, model, write, lock)
        self.pool = pool

    def prepare(self, conn: psycopg.Connection, tasks: list[Task]) -> Batch:
        inputs = {task.id: self.pool.submit(_timed_sample, task, self.model) for task in tasks}
        return Batch(self.stage, tasks, inputs)

    def run(self, batch: Batch) -> Outcome:
        outcome = Outcome()
        started = time.perf_counter()
        for task_id, future in batch.inputs.items():
            try:
                outcome.results[task_id], seconds = future.result()
                self.stats.decode_s += seconds
            except InputError as error:
                outcome.failures.append(Failure(task_id, str(error), error.permanent))
        self.stats.decode_wait_s += time.perf_counter() - started
        return outcome


def _per_item(call: Callable[[list[Any]], Sequence[Any]]) -> Callable[[list[Any]], list[Any]]:
    """`call` over many inputs, given items that are lists of inputs (an image's one, a video's
    frames): one model call for the batch, in chunks no larger than the batch of tasks, and
    the outputs given back per item."""

    def run(items: list[list[Any]]) -> list[list[Any]]:
        flat = [x for item in items for x in item]
        chunk = max(len(items), 1)
        outputs: list[Any] = []
        for start in range(0, len(flat), chunk):
            part = flat[start : start + chunk]
            found = call(part)
            if len(found) != len(part):
                raise RuntimeError(f"the model gave {len(found)} results for {len(part)}")
            outputs.extend(found)
        split, start = [], 0
        for item in items:
            split.append(outputs[start : start + len(item)])
            start += len(item)
        return split

    return run


def _timed_frames(
    frames: list[video_frames.StoredFrame], max_side: int, mode: str = "RGB"
) -> tuple[list[Decoded], float]:
    started = time.perf_counter()
    decoded = [decode_bytes(frame.jpeg, max_side, mode=mode) for frame in frames]
    return decoded, time.perf_counter() - started


def _timed_decode(jpeg: bytes, max_side: int) -> tuple[Decoded, float]:
    started = time.perf_counter()
    return decode_bytes(jpeg, max_side), time.perf_counter() - started


def _timed_sample(task: Task, sampler: Any) -> tuple[list[SampledFrame], float]:
    started = time.perf_counter()
    root = task.root or default_root(task.uri)
    rows = video_frames.sample(task.uri, sampler, root=root, sha256=task.sha256, size=task.bytes)
    return rows, time.perf_counter() - started


@dataclass(frozen=True)
class TextResult:
    document: str
    input_sha256: str
    vector: Any = None  # None: unchanged since it was embedded, or nothing to embed


class DocumentRunner(Runner):
    """Stages that read the asset document (text): its vector, embedded only when the document
    changed since its vector was made."""

    def prepare(self, conn: psycopg.Connection, tasks: list[Task]) -> Batch:
        rows = conn.execute(
            """SELECT d.asset_id, d.document, e.model, e.input_sha256
               FROM semsql.asset_documents(%s) d
               LEFT JOIN semsql.embeddings e ON e.asset_id = d.asset_id AND e.space = %s""",
            [[task.asset_id for task in tasks], self.spec.vector_space],
        ).fetchall()
        documents = {
            asset_id: (document, model, digest) for asset_id, document, model, digest in rows
        }
        return Batch(self.stage, tasks, {task.id: documents.get(task.asset_id) for task in tasks})

    def run(self, batch: Batch) -> Outcome:
        outcome = Outcome()
        to_embed = []
        for task_id, found in batch.inputs.items():
            document, model, stored_digest = found or ("", None, None)
            digest = hashlib.sha256(document.encode()).hexdigest()
            if not document or (model == self.model_name and stored_digest == digest):
                outcome.results[task_id] = TextResult(document, digest)
            else:
                to_embed.append((task_id, document))
        embedded = self._isolated(lambda docs: list(self.model.encode(docs)), to_embed)
        documents = dict(to_embed)
        for task_id, vector in embedded.results.items():
            digest = hashlib.sha256(documents[task_id].encode()).hexdigest()
            outcome.results[task_id] = TextResult(documents[task_id], digest, vector)
        outcome.failures = embedded.failures
        return outcome
