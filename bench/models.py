"""Model throughput: items/s per stage at one batch size on one device.

By default the stages run the tiny random-weight models of the tests (real architectures, tiny
sizes: this measures the pipeline around the models: preprocessing, batching, post-processing)
plus the real MTCNN and MiniLM. `--models env` runs what SEMSQL_MODEL_* configure instead
(the real defaults where the hub or its cache is reachable); a stage that cannot load is
reported, not fatal.

Images are the real sample photos (scikit-image astronaut and chelsea, matplotlib's Grace
Hopper) cycled to --n; face_vectors and emotion count face crops of the faces MTCNN found.

    python bench/models.py [--device auto] [--batch-size 8] [--n 64] [--repeat 3]
                           [--models tiny|env] [--stages caption,tags,...] [--image-size 0]
                           [--out bench/results/models.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import skimage.data
import torch
from matplotlib import cbook
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fix_models import build_segments_model, build_tiny_models

from semsql.embedder.models import STAGES, ModelLoadError, load_model_config, load_stage
from semsql.embedder.models.device import resolve_device

SENTENCES = (
    "children playing in the snow",
    "a cat asleep on a red sofa next to a window",
    "portrait of an astronaut in a white suit holding a helmet",
    "a naval officer in uniform",
    "quarterly revenue spreadsheet",
)


def sample_images(size: int) -> list[Image.Image]:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as hopper:
        images = [
            Image.fromarray(skimage.data.astronaut()),
            Image.fromarray(skimage.data.chelsea()),
            hopper.convert("RGB"),
        ]
    return [image.resize((size, size)) for image in images] if size else images


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timed_batches(batch_list: list[Any], run: Callable[[Any], Any], repeat: int) -> list[float]:
    """Seconds for one pass over all batches, `repeat` times, after one warm-up batch."""
    run(batch_list[0])  # first-call allocations, lazy imports, kernel selection
    passes = []
    for _ in range(repeat):
        _synchronize()
        started = time.perf_counter()
        for batch in batch_list:
            run(batch)
        _synchronize()
        passes.append(time.perf_counter() - started)
    return passes


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_stage(
    stage: str,
    model: str,
    device: torch.device,
    images: list[Image.Image],
    batch_size: int,
    repeat: int,
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    loaded = load_stage(stage, model, device)
    load_s = time.perf_counter() - started
    rows = []

    def row(name: str, unit: str, count: int, passes: list[float]) -> dict[str, Any]:
        # Best of the passes: on a shared machine the slower ones measure the neighbours.
        return {
            "stage": name,
            "model": model,
            "unit": unit,
            "items": count,
            "seconds": [round(seconds, 3) for seconds in passes],
            "items_per_s": round(count / min(passes), 2),
            "median_items_per_s": round(count / statistics.median(passes), 2),
            "load_s": round(load_s, 2),
        }

    if stage in ("face_vectors", "emotion"):
        detector = load_stage("faces", "mtcnn", device)
        boxes = [[face.box for face in faces] for faces in detector.run(images)]
        pairs = list(zip(images, boxes, strict=True))
        faces = sum(len(b) for b in boxes)
        passes = timed_batches(
            batches(pairs, batch_size),
            lambda batch: loaded.run([p[0] for p in batch], [p[1] for p in batch]),
            repeat,
        )
        rows.append(row(stage, "face", faces, passes))
    elif stage == "text":
        texts = list(itertools.islice(itertools.cycle(SENTENCES), len(images)))
        rows.append(
            row(
                stage,
                "text",
                len(texts),
                timed_batches(batches(texts, batch_size), loaded.encode, repeat),
            )
        )
    else:
        rows.append(
            row(
                stage,
                "image",
                len(images),
                timed_batches(batches(images, batch_size), loaded.run, repeat),
            )
        )
    if stage == "clip":
        texts = list(itertools.islice(itertools.cycle(SENTENCES), len(images)))
        rows.append(
            row(
                "clip_text",
                "text",
                len(texts),
                timed_batches(batches(texts, batch_size), loaded.encode, repeat),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=os.environ.get("SEMSQL_DEVICE", "auto"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n", type=int, default=64, help="images (or texts) per stage")
    parser.add_argument("--models", choices=("tiny", "env"), default="tiny")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; best is reported")
    parser.add_argument("--image-size", type=int, default=0, help="resize to NxN (0: as shipped)")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "models.json"
    )
    args = parser.parse_args()

    device = resolve_device(args.device)
    samples = sample_images(args.image_size)
    images = list(itertools.islice(itertools.cycle(samples), args.n))
    with tempfile.TemporaryDirectory() as folder:
        if args.models == "tiny":
            config: dict[str, str | None] = dict(build_tiny_models(Path(folder)))
            config["segments"] = str(build_segments_model(Path(folder) / "segments"))
        else:
            config = load_model_config()
        rows: list[dict[str, Any]] = []
        for stage in args.stages.split(","):
            model = config[stage]
            if model is None:
                rows.append({"stage": stage, "model": None, "error": "off"})
                continue
            try:
                rows.extend(bench_stage(stage, model, device, images, args.batch_size, args.repeat))
            except ModelLoadError as exc:
                rows.append({"stage": stage, "model": model, "error": str(exc)})

    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "models": args.models,
        "batch_size": args.batch_size,
        "n": args.n,
        "repeat": args.repeat,
        "image_sizes": sorted({image.size for image in samples}),
        "stages": rows,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def print_table(result: dict[str, Any]) -> None:
    print(
        f"device {result['device']} ({result['device_name']}, {result['torch_threads']} threads), "
        f"torch {result['torch']}, models {result['models']}, batch {result['batch_size']}, "
        f"n {result['n']}"
    )
    print(
        f"{'stage':<13} {'items':>6} {'unit':<6} {'items/s':>9} {'median':>9} {'load s':>7}  model"
    )
    for row in result["stages"]:
        if "error" in row:
            dashes = f"{'-':>6} {'':<6} {'-':>9} {'-':>9} {'-':>7}"
            print(f"{row['stage']:<13} {dashes}  {row['error'][:120]}")
            continue
        model = Path(row["model"]).name if os.path.isabs(row["model"]) else row["model"]
        print(
            f"{row['stage']:<13} {row['items']:>6} {row['unit']:<6} {row['items_per_s']:>9.1f} "
            f"{row['median_items_per_s']:>9.1f} {row['load_s']:>7.2f}  {model}"
        )


if __name__ == "__main__":
    main()
