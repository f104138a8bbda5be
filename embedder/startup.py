"""A worker's start: its stages' models loaded, and their vector spaces registered.

A model that is off, cannot load, or whose vectors do not fit the vector space already stored
makes its stage unavailable on this worker: the worker reports it (with the reason and the fix)
instead of running it, its tasks wait for a worker that loads the model, and the others run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from semsql import stages as registry
from semsql.database import fetch_value
from semsql.stages import Reads, Stage

from . import writers
from .models import ModelLoadError, load_stage
from .models.device import resolve_device
from .pipeline import DocumentRunner, FaceRunner, ImageRunner, Runner, VideoRunner
from .query_embeddings import QueryEncoder

log = logging.getLogger(__name__)


class SpaceMismatch(RuntimeError):
    """The vector space holds vectors of another model."""

    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Unavailable:
    """Why a stage's model is not available here, and how to make it so."""

    reason: str
    fix: str | None

    @classmethod
    def off(cls, spec: Stage) -> Unavailable:
        return cls(
            f"its model is off ({off_setting(spec)})",
            f"set {spec.env_var} to a model id or a local folder and start `semsql worker`",
        )

    @classmethod
    def of(cls, error: ModelLoadError | SpaceMismatch) -> Unavailable:
        if isinstance(error, SpaceMismatch):
            return cls(error.message, error.hint)
        return cls(f"{error.model!r} could not be loaded: {error.reason}", error.fix)


def off_setting(spec: Stage) -> str:
    """What turned a stage's model off here: its setting, or, for a stage off by default,
    the lack of one (the models mapping cannot tell the two apart)."""
    if spec.off_by_default:
        return f"off by default: {spec.env_var} is not set here, or is off"
    return f"{spec.env_var}=off"


@dataclass
class Loaded:
    device: str
    runners: dict[str, Runner] = field(default_factory=dict)
    unavailable: dict[str, Unavailable] = field(default_factory=dict)
    """Stage -> why this worker cannot run it (its model is off or did not load)."""
    problems: dict[str, str] = field(default_factory=dict)
    """Stage -> the same, in one line, for the worker's registration."""


def load_runners(
    conn: psycopg.Connection,
    stages: Iterable[str],
    models: Mapping[str, str | None],
    *,
    device: str,
    pool: ThreadPoolExecutor,
    stage_options: Mapping[str, Mapping[str, Any]],
    reset_spaces: Collection[str],
) -> Loaded:
    torch_device = resolve_device(device)
    loaded = Loaded(str(torch_device))
    for stage in stages:
        spec = registry.stage(stage)
        model_name = models.get(stage)
        if model_name is None:
            log.warning("%s: model is off; its tasks wait for a worker that runs it", stage)
            loaded.problems[stage] = f"model is off ({off_setting(spec)})"
            loaded.unavailable[stage] = Unavailable.off(spec)
            continue
        started = time.perf_counter()
        try:
            model = load_stage(stage, model_name, torch_device, **stage_options.get(stage, {}))
            runner = make_runner(spec, model, pool)
            register_space(conn, runner, reset=spec.vector_space in reset_spaces)
            if stage == "face_vectors":
                requeue_faces_of_other_models(conn, runner.model_name)
        except (ModelLoadError, SpaceMismatch) as error:
            log.error("%s: %s; its tasks wait for a worker that loads it", stage, error)
            loaded.problems[stage] = str(error)
            loaded.unavailable[stage] = Unavailable.of(error)
            continue
        loaded.runners[stage] = runner
        seconds = time.perf_counter() - started
        log.info("%s: %s loaded on %s in %.1f s", stage, model_name, torch_device, seconds)
    return loaded


def enable_stages_turned_on(
    conn: psycopg.Connection, stages: Iterable[str], models: Mapping[str, str | None]
) -> None:
    """A stage off by default whose setting names a model is enabled here: semsql.stages
    starts it disabled, and its task is queued for every asset already stored
    (sql/010_queue.sql: semsql.enable_stage). Whether the model loads is found out after."""
    for stage in stages:
        if registry.stage(stage).off_by_default and models.get(stage) is not None:
            queued = fetch_value(conn, "SELECT semsql.enable_stage(%s)", [stage])
            if queued:
                log.info("%s: turned on by its setting; queued %d stored assets", stage, queued)


def make_runner(spec: Stage, model: Any, pool: ThreadPoolExecutor) -> Runner:
    """The runner of a stage, by what it reads, with the writer semsql.stages names for it."""
    write = getattr(writers, spec.writer)
    # Held around model calls; the query answerer takes it too where it uses the same model.
    lock = threading.Lock()
    if spec.reads is Reads.DOCUMENT:
        return DocumentRunner(spec, model, write, lock)
    if spec.reads is Reads.VIDEO:
        return VideoRunner(spec, model, write, pool, lock)
    if spec.reads is Reads.FACES:
        return FaceRunner(spec, model, write, pool, lock)
    write_frames = getattr(writers, spec.frame_writer) if spec.frame_writer else None
    return ImageRunner(spec, model, write, pool, lock, write_frames)


def register_space(conn: psycopg.Connection, runner: Runner, *, reset: bool) -> None:
    """Record the model of the runner's vector space, if it fills one."""
    space = runner.spec.vector_space
    if space is None:
        return
    try:
        # A reset that changes the dimension builds the index on the second call.
        for again in (True, False) if reset else (False,):
            outcome = fetch_value(
                conn,
                "SELECT semsql.register_vector_space(%s, %s, %s, %s)",
                [space, runner.model_name, runner.model.dims, again],
            )
            if outcome != "unchanged":
                log.info("%s space: %s", space, outcome)
    except psycopg.errors.ObjectNotInPrerequisiteState as error:
        raise SpaceMismatch(str(error.diag.message_primary), error.diag.message_hint) from None


def requeue_faces_of_other_models(conn: psycopg.Connection, model: str) -> None:
    """Faces whose vectors another face-vector model made are embedded again with this one
    (sql/045_people.sql: semsql.requeue_faces_of_other_models)."""
    assets = fetch_value(conn, "SELECT semsql.requeue_faces_of_other_models(%s)", [model])
    if assets:
        log.info("face_vectors: %s assets have faces of another model; queued again", assets)


def query_encoders(runners: Mapping[str, Runner]) -> dict[str, QueryEncoder]:
    """The models that answer semsql.embed_text, per vector space: those that fill it."""
    return {
        space: QueryEncoder(runner.model_name, _query_encode(runner.model), runner.lock)
        for space, spec in registry.SPACES.items()
        if (runner := runners.get(spec.name)) is not None
    }


def _query_encode(model: Any) -> Callable[[Sequence[str]], Any]:
    """The model's encode, on a traced copy for the text stage (loaded, so torch is there)."""
    from .models.stages.text import TextEncoderStage
    from .models.stages.text_queries import query_encoder

    return query_encoder(model) if isinstance(model, TextEncoderStage) else model.encode
