"""The segments stage (off by default): a tiny random SegFormer through the production loader,
segments rows with masks that decode to their shares, tags with source 'segmentation' that
filter searches, and the same 'model not available' path as the other stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from fix_models import SEGMENT_LABELS, build_emotion_model
from PIL import Image

from semsql.cli.contact_sheet import write_contact_sheet
from semsql.cli.main import cli
from semsql.embedder.models import ModelLoadError, load_model_config, load_stage
from semsql.embedder.models.stages.segments import mask_grid, min_share_setting
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.embedder.writers import write_tags
from semsql.search import SearchRequest, run_search
from semsql.segments import Mask, Segment, stored_segments

EVERY_LABEL = {"segments": {"min_share": 0.0}}  # every label the random model gives is kept


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pictures")
    paths = [folder / "astronaut.png", folder / "coffee.jpg"]
    Image.fromarray(skimage.data.astronaut()).save(paths[0])
    Image.fromarray(skimage.data.coffee()).save(paths[1])
    return paths


def ingest(paths: list[Path]) -> None:
    result = CliRunner().invoke(cli, ["ingest", *map(str, paths), "--json"])
    assert result.exit_code == 0, result.output


def asset_ids(db: psycopg.Connection) -> list[int]:
    return [row[0] for row in db.execute("SELECT id FROM semsql.assets ORDER BY id")]


def run_worker(url: str, models: dict[str, str | None], **options: object) -> Worker:
    worker = Worker(
        url,
        WorkerOptions(until_idle=True, poll_interval=0.2, **options),  # type: ignore[arg-type]
        models=models,
    )
    worker.run()
    return worker


@pytest.fixture
def only_segments(db: psycopg.Connection) -> None:
    """Every other stage disabled: the tests run the segments stage alone."""
    db.execute("UPDATE semsql.stages SET enabled = false WHERE name <> 'segments'")


def test_masks_round_trip_and_give_their_share() -> None:
    rng = np.random.default_rng(0)
    grids = [
        rng.random((7, 11)) < 0.3,
        np.ones((3, 4), dtype=bool),
        np.zeros((5, 2), dtype=bool),
        np.eye(6, dtype=bool),
    ]
    for inside in grids:
        mask = Mask.encode(inside)
        assert (mask.width, mask.height) == (inside.shape[1], inside.shape[0])
        assert np.array_equal(mask.decode(), inside)
        assert mask.share == pytest.approx(inside.mean())
        assert sum(mask.runs) == inside.size
    assert Mask.encode(np.ones((2, 2), dtype=bool)).runs == (0, 4)  # starts outside
    with pytest.raises(ValueError, match="sum to 3, not 2 x 2"):
        Mask(2, 2, (1, 2)).decode()
    assert mask_grid(640, 480, 64) == (48, 64) and mask_grid(10, 1000, 64) == (64, 1)


def test_the_stage_labels_every_cell_once_and_masks_decode_to_the_shares(
    tiny_segments_model: str, pictures: list[Path]
) -> None:
    stage = load_stage("segments", tiny_segments_model, "cpu", min_share=0.0)
    assert stage.model_name == tiny_segments_model
    images = [Image.open(path) for path in pictures]
    results = stage.run(images)
    assert len(results) == 2
    for image, segments in zip(images, results, strict=True):
        assert segments, "a random model still labels every pixel with something"
        assert {s.label for s in segments} <= set(SEGMENT_LABELS)
        grids = [s.mask.decode() for s in segments]
        # Every cell of the grid has exactly one label: the shares add up to the whole image.
        assert np.array_equal(sum(g.astype(int) for g in grids), np.ones_like(grids[0], int))
        assert grids[0].shape == mask_grid(image.width, image.height, 64)
        for segment, grid in zip(segments, grids, strict=True):
            assert segment.share == pytest.approx(grid.mean())
            assert 0.0 < segment.score <= 1.0
            assert segment.box is not None
            x0, y0, x1, y1 = segment.box
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        assert [s.share for s in segments] == sorted((s.share for s in segments), reverse=True)
    # The cut: labels under min_share are left out.
    cut = max(s.share for s in results[0]) - 1e-6
    strict = load_stage("segments", tiny_segments_model, "cpu", min_share=cut).run(images[:1])
    assert [s.label for s in strict[0]] == [results[0][0].label]


def build_deeplab_mobilevit_model(folder: Path) -> Path:
    """MobileViTForSemanticSegmentation (DeepLabV3 head), like apple/deeplabv3-mobilevit-small:
    its processor keeps the aspect ratio and centre-crops, which the loader turns off."""
    from transformers import (
        MobileViTConfig,
        MobileViTForSemanticSegmentation,
        MobileViTImageProcessor,
    )

    labels = ("background", "cat", "dog")
    config = MobileViTConfig(
        image_size=64,
        hidden_sizes=[16, 24, 32],
        neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
        num_attention_heads=2,
        aspp_out_channels=16,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    MobileViTForSemanticSegmentation(config).save_pretrained(folder)
    MobileViTImageProcessor(
        size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}
    ).save_pretrained(folder)
    return folder


def test_a_deeplabv3_model_of_another_architecture_loads_the_same_way(
    tmp_path: Path, pictures: list[Path]
) -> None:
    model = str(build_deeplab_mobilevit_model(tmp_path / "deeplab"))
    stage = load_stage("segments", model, "cpu", min_share=0.0)
    assert stage.processor.do_center_crop is False  # the logits cover the whole image
    images = [Image.open(path) for path in pictures]  # square and 3:2: two batches
    for image, segments in zip(images, stage.run(images), strict=True):
        assert sum(s.share for s in segments) == pytest.approx(1.0)
        assert segments[0].mask.decode().shape == mask_grid(image.width, image.height, 64)


def test_off_by_default_the_stage_is_disabled_and_stores_nothing(
    db: psycopg.Connection, semsql_env: str, pictures: list[Path], only_segments: None
) -> None:
    assert load_model_config({})["segments"] is None
    assert db.execute("SELECT enabled FROM semsql.stages WHERE name = 'segments'").fetchone() == (
        False,
    )
    ingest(pictures[:1])
    run_worker(semsql_env, {"segments": None})
    assert db.execute("SELECT count(*) FROM semsql.tasks").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM semsql.segments").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM semsql.tags").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM semsql.unavailable_stages").fetchone() == (0,)
    assert db.execute("SELECT status FROM semsql.assets").fetchall() == [("ready",)]


def test_its_setting_turns_it_on_for_stored_assets_and_fills_segments_and_tags(
    db: psycopg.Connection,
    semsql_env: str,
    pictures: list[Path],
    only_segments: None,
    tiny_segments_model: str,
    tmp_path: Path,
) -> None:
    ingest(pictures)  # before the stage is on: the worker queues them when it turns it on
    assert load_model_config({"SEMSQL_MODEL_SEGMENTS": tiny_segments_model})["segments"] == (
        tiny_segments_model
    )
    worker = run_worker(semsql_env, {"segments": tiny_segments_model}, stage_options=EVERY_LABEL)
    assert worker.served == ["segments"]
    assert db.execute("SELECT enabled FROM semsql.stages WHERE name = 'segments'").fetchone() == (
        True,
    )
    tasks = db.execute("SELECT stage, status, count(*) FROM semsql.tasks GROUP BY 1, 2")
    assert tasks.fetchall() == [("segments", "done", 2)]
    ids = asset_ids(db)
    stored = stored_segments(db, ids)
    assert sorted(stored) == ids
    for asset_id, segments in stored.items():
        assert sum(s.share for s in segments) == pytest.approx(1.0, abs=1e-5)
        for segment in segments:
            assert segment.share == pytest.approx(segment.mask.share, abs=1e-6)
        tags = db.execute(
            """SELECT label, confidence, box FROM semsql.tags
               WHERE asset_id = %s AND source = 'segmentation' ORDER BY label""",
            [asset_id],
        ).fetchall()
        assert [(t[0], pytest.approx(t[1], abs=1e-6)) for t in tags] == sorted(
            (s.label, s.score) for s in segments
        )
        width, height = db.execute(
            "SELECT width, height FROM semsql.assets WHERE id = %s", [asset_id]
        ).fetchone()
        for _, _, (x0, y0, x1, y1) in tags:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert db.execute("SELECT DISTINCT model FROM semsql.segments").fetchall() == [
        (tiny_segments_model,)
    ]
    assert db.execute("SELECT count(*) FROM semsql.assets WHERE status = 'ready'").fetchone() == (
        2,
    )

    # The tags filter searches: an asset is found by a label it has, and not by one it lacks.
    first = stored[ids[0]][0].label
    hits, _ = run_search(db, SearchRequest(tags=(first.upper(),)))
    assert ids[0] in {hit.asset_id for hit in hits}
    assert all(first in hit.tags for hit in hits)
    absent = set(SEGMENT_LABELS) - {s.label for s in stored[ids[0]]}
    for label in absent:
        hits, _ = run_search(db, SearchRequest(tags=(label,)))
        assert ids[0] not in {hit.asset_id for hit in hits}

    # The contact sheet of a tag search draws them.
    sheet = tmp_path / "sheet.html"
    result = CliRunner().invoke(cli, ["search", "--tag", first, "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    assert f"{first} {stored[ids[0]][0].share:.0%}" in sheet.read_text()

    # Running again replaces the rows; the tags stage keeps them.
    rows = "SELECT asset_id, label, share, mask_rle FROM semsql.segments ORDER BY 1, 2"
    before = db.execute(rows).fetchall()
    db.execute("SELECT semsql.requeue_tasks(%s, '{segments}')", [ids])
    run_worker(semsql_env, {"segments": tiny_segments_model}, stage_options=EVERY_LABEL)
    assert db.execute(rows).fetchall() == before
    tag_count = db.execute("SELECT count(*) FROM semsql.tags").fetchone()
    assert tag_count == (len(before),)
    with db.transaction():
        write_tags(db, "a-detector", [])
        db.execute("DELETE FROM semsql.tags WHERE source = 'a-detector'")
    assert db.execute("SELECT count(*) FROM semsql.tags").fetchone() == tag_count

    # New content: the old pixels' segments and tags go, and the stage is queued again.
    db.execute("UPDATE semsql.assets SET sha256 = repeat('0', 64) WHERE id = %s", [ids[0]])
    assert db.execute(
        "SELECT count(*) FROM semsql.segments WHERE asset_id = %s", [ids[0]]
    ).fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM semsql.tags WHERE asset_id = %s", [ids[0]]
    ).fetchone() == (0,)
    assert db.execute(
        "SELECT status FROM semsql.tasks WHERE asset_id = %s", [ids[0]]
    ).fetchone() == ("pending",)

    # Deleting an asset removes its segments and their tags.
    db.execute("DELETE FROM semsql.assets WHERE id = %s", [ids[1]])
    assert db.execute("SELECT count(*) FROM semsql.segments").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM semsql.tags").fetchone() == (0,)


def test_new_assets_get_the_stage_once_it_is_on_and_the_default_cut_applies(
    db: psycopg.Connection,
    semsql_env: str,
    pictures: list[Path],
    only_segments: None,
    tiny_segments_model: str,
) -> None:
    run_worker(semsql_env, {"segments": tiny_segments_model})  # turns it on, nothing stored yet
    ingest(pictures[:1])
    assert db.execute("SELECT stage, status FROM semsql.tasks").fetchall() == [
        ("segments", "pending")
    ]
    run_worker(semsql_env, {"segments": tiny_segments_model})
    shares = [row[0] for row in db.execute("SELECT share FROM semsql.segments")]
    assert shares and min(shares) >= 0.01  # DEFAULT_MIN_SHARE

    # Once on, a worker without the setting leaves its tasks waiting and says why.
    ingest(pictures[1:])
    run_worker(semsql_env, {"segments": None})
    assert db.execute(
        "SELECT reason FROM semsql.unavailable_stages WHERE stage = 'segments'"
    ).fetchone() == (
        "its model is off (off by default: SEMSQL_MODEL_SEGMENTS is not set here, or is off)",
    )
    assert db.execute("SELECT count(*) FROM semsql.assets WHERE status = 'ready'").fetchone() == (
        2,
    )


@pytest.mark.parametrize("kind", ["missing", "wrong architecture"])
def test_a_model_that_cannot_load_makes_the_stage_wait_with_the_reason_and_fix(
    db: psycopg.Connection,
    semsql_env: str,
    pictures: list[Path],
    only_segments: None,
    tmp_path: Path,
    kind: str,
) -> None:
    if kind == "missing":
        model, reason = str(tmp_path / "no-such-model"), "does not exist"
    else:
        model, reason = str(build_emotion_model(tmp_path / "vit")), "wrong architecture"
    ingest(pictures[:1])
    worker = run_worker(semsql_env, {"segments": model})
    assert "segments" in worker.unavailable and "segments" not in worker.served
    ((found_reason, fix),) = db.execute(
        "SELECT reason, fix FROM semsql.unavailable_stages WHERE stage = 'segments'"
    ).fetchall()
    assert model in found_reason and reason in found_reason
    assert fix and "SEMSQL_MODEL_SEGMENTS" in fix
    assert db.execute("SELECT stage, status FROM semsql.tasks").fetchall() == [
        ("segments", "waiting")
    ]
    assert db.execute("SELECT status FROM semsql.assets").fetchall() == [("ready",)]
    status = CliRunner().invoke(cli, ["status"])
    assert "segments: model not available" in status.output


def test_a_bad_min_share_setting_is_a_clear_load_error() -> None:
    assert min_share_setting("m", {}) == 0.01
    assert min_share_setting("m", {"SEMSQL_SEGMENTS_MIN_SHARE": "0.2"}) == 0.2
    for value in ("1", "-0.1", "lots", "nan"):
        with pytest.raises(ModelLoadError, match="SEMSQL_SEGMENTS_MIN_SHARE"):
            min_share_setting("m", {"SEMSQL_SEGMENTS_MIN_SHARE": value})


def test_the_contact_sheet_draws_the_masks_with_an_escaped_legend(
    tmp_path: Path, pictures: list[Path]
) -> None:
    from semsql.search import SearchHit

    hit = SearchHit(
        asset_id=1,
        uri=str(pictures[0]),
        score=0.5,
        caption=None,
        tags=[],
        emotions=[],
        people=[],
        matched_by=["tags"],
        image_score=None,
        text_score=None,
        keyword_score=None,
        exclude_score=None,
        taken_at=None,
        rank=1,
    )
    top = np.zeros((4, 4), dtype=bool)
    top[:2] = True
    segments = [
        Segment("<b>sky</b>", 0.5, 0.9, Mask.encode(top)),
        Segment("grass", 0.5, 0.8, Mask.encode(~top)),
    ]
    plain, drawn = tmp_path / "plain.html", tmp_path / "drawn.html"
    write_contact_sheet(plain, [hit], "t")
    write_contact_sheet(drawn, [hit], "t", {1: segments})
    page = drawn.read_text()
    assert "&lt;b&gt;sky&lt;/b&gt; 50%" in page and "<b>sky" not in page
    assert "grass 50%" in page
    assert "grass" not in plain.read_text()
    assert page.split('src="')[1].split('"')[0] != plain.read_text().split('src="')[1].split('"')[0]
