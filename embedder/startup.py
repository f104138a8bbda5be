"""A worker's start: its stages' models loaded, and their vector spaces registered.

A model that cannot load, or whose vectors do not fit the vector space already stored, makes
its stage `broken`: the worker fails that stage's tasks with the reason and runs the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .device import resolve_device
from .models import ModelLoadError, load_stage, model_env_var
from .pipeline import Runner, make_runner
from .query_embeddings import SPACE_STAGES, QueryEncoder

log = logging.getLogger(__name__)


class SpaceMismatch(RuntimeError):
    """The vector space holds vectors of another model."""


@dataclass
class Loaded:
    device: str
    runners: dict[str, Runner] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    """Stage -> why its tasks fail."""
    problems: dict[str, str] = field(default_factory=dict)
    """Stage -> why this worker does not run it (broken, or its model is off)."""


def load_runners(
    conn: psycopg.Connection,
    stages: Iterable[str],
    models: Mapping[str, str | None],
    *,
    device: str,
    pool: ThreadPoolExecutor,
    stage_options: Mapping[str, Mapping[str, Any]],
    reset_spaces: Iterable[str],
) -> Loaded:
    torch_device = resolve_device(device)
    loaded = Loaded(str(torch_device))
    # The query answerer shares these models with their stages.
    locks = {"text": threading.Lock(), "clip": threading.Lock()}
    for stage in stages:
        model_name = models.get(stage)
        if model_name is None:
            log.warning("%s: model is off; its tasks wait for a worker that runs it", stage)
            loaded.problems[stage] = f"model is off ({model_env_var(stage)}=off)"
            continue
        started = time.perf_counter()
        try:
            model = load_stage(stage, model_name, torch_device, **stage_options.get(stage, {}))
            runner = make_runner(stage, model, pool, locks.get(stage, threading.Lock()))
            register_space(conn, runner, reset=runner.stage in _stages_of(reset_spaces))
        except (ModelLoadError, SpaceMismatch) as error:
            log.error("%s: %s", stage, error)
            loaded.broken[stage] = loaded.problems[stage] = str(error)
            continue
        loaded.runners[stage] = runner
        seconds = time.perf_counter() - started
        log.info("%s: %s loaded on %s in %.1f s", stage, model_name, torch_device, seconds)
    return loaded


def register_space(conn: psycopg.Connection, runner: Runner, *, reset: bool) -> None:
    """Record the model of the runner's vector space (clip: image, text: text), if it has one."""
    space = {stage: space for space, stage in SPACE_STAGES.items()}.get(runner.stage)
    if space is None:
        return
    try:
        # A reset that changes the dimension builds the index on the second call.
        for again in (True, False) if reset else (False,):
            outcome = conn.execute(
                "SELECT semsql.register_vector_space(%s, %s, %s, %s)",
                [space, runner.model_name, runner.model.dims, again],
            ).fetchone()[0]
            if outcome != "unchanged":
                log.info("%s space: %s", space, outcome)
    except psycopg.errors.ObjectNotInPrerequisiteState as error:
        hint = error.diag.message_hint
        raise SpaceMismatch(f"{error.diag.message_primary} ({hint})") from None


def query_encoders(runners: Mapping[str, Runner]) -> dict[str, QueryEncoder]:
    """The models that answer semsql.embed_text, per vector space."""
    return {
        space: QueryEncoder(
            runners[stage].model_name, runners[stage].model.encode, runners[stage].lock
        )
        for space, stage in SPACE_STAGES.items()
        if stage in runners
    }


def _stages_of(spaces: Iterable[str]) -> set[str]:
    return {SPACE_STAGES[space] for space in spaces}
