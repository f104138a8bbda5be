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

from semsql.decode import Decoded, InputError, default_root, load_image
from semsql.stages import Stage

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
    results are (output, scale)."""

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
        side, mode = self.spec.image_side, self.spec.image_mode
        inputs = {task.id: self.pool.submit(_timed_load, task, side, mode) for task in tasks}
        return Batch(self.stage, tasks, inputs)

    def run(self, batch: Batch) -> Outcome:
        decoded, failures = self._gather(batch)
        outcome = self._isolated(self.model.run, [(i, d.image) for i, d in decoded.items()])
        outcome.results = {i: (out, decoded[i].scale) for i, out in outcome.results.items()}
        outcome.failures = failures + outcome.failures
        return outcome

    def _gather(self, batch: Batch) -> tuple[dict[int, Decoded], list[Failure]]:
        decoded: dict[int, Decoded] = {}
        failures: list[Failure] = []
        started = time.perf_counter()
        for task_id, future in batch.inputs.items():
            if not isinstance(future, Future):
                continue
            try:
                decoded[task_id], seconds = future.result()
                self.stats.decode_s += seconds
            except InputError as error:
                failures.append(Failure(task_id, str(error), error.permanent))
        self.stats.decode_wait_s += time.perf_counter() - started
        return decoded, failures


class FaceRunner(ImageRunner):
    """Stages that read the stored faces (face_vectors, emotion): one output per face; results
    are [(face id, output)]."""

    def prepare(self, conn: psycopg.Connection, tasks: list[Task]) -> Batch:
        faces: dict[int, list[tuple[int, list[float]]]] = {}
        for face_id, asset_id, box in conn.execute(
            "SELECT id, asset_id, box FROM semsql.faces WHERE asset_id = ANY (%s) ORDER BY id",
            [[task.asset_id for task in tasks]],
        ):
            faces.setdefault(asset_id, []).append((face_id, box))
        batch = Batch(self.stage, tasks)
        max_side = self.spec.image_side
        for task in tasks:
            found = faces.get(task.asset_id, [])
            future = self.pool.submit(_timed_load, task, max_side) if found else None
            batch.inputs[task.id] = (future, found)
        return batch

    def run(self, batch: Batch) -> Outcome:
        images = Batch(
            batch.stage,
            batch.tasks,
            {i: future for i, (future, _) in batch.inputs.items() if future},
        )
        decoded, failures = self._gather(images)
        items = []
        for task_id, image in decoded.items():
            boxes = [[v / image.scale for v in box] for _, box in batch.inputs[task_id][1]]
            items.append((task_id, (image.image, boxes)))
        outcome = self._isolated(self._call, items)
        results: dict[int, Any] = {
            i: [] for i, (future, _) in batch.inputs.items() if future is None
        }
        for task_id, outputs in outcome.results.items():
            face_ids = [face_id for face_id, _ in batch.inputs[task_id][1]]
            results[task_id] = list(zip(face_ids, outputs, strict=True))
        return Outcome(results, failures + outcome.failures)

    def _call(self, items: list[tuple[Image.Image, list[list[float]]]]) -> list[Any]:
        outputs: list[Any] = self.model.run(
            [image for image, _ in items], [boxes for _, boxes in items]
        )
        return outputs


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
