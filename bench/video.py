"""Video decode and frame sampling speed, beside each image stage's frames/s on the frames kept.

A 720p H.264 video (30 fps, camera-like grain, x264 `veryfast` as phones and screen recorders
write) is encoded here from the sample pictures: 5 s shots, so scene cuts are real. Rows:

- probe: the container and two decoded frames (semsql.video.probe_video);
- sample: semsql.video.sample_frames, the whole step ingest will run (decode every frame in
  FFmpeg's threads, a 32x18 grey thumbnail of each for cuts and repeats, RGB for kept frames);
- decode only: the same decode with nothing done to the frames, single-threaded and threaded;
- sample 1/10 s: samples far apart seek to the keyframe before each (a long video's cap);
- keyframes only: FFmpeg skips every non-key frame (what seeking to keyframes costs at best).

Then every image stage (tiny random-weight models of the real architectures, real MTCNN, as in
bench/models.py) runs on the sampled frames: frames/s per stage and the whole pipeline's
seconds of video per second of work.

    python bench/video.py [--seconds 20] [--size 1280x720] [--stages clip,faces,...]
                          [--out bench/results/video.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import bench_stage  # bench/models.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fix_models import build_tiny_models

from semsql.embedder.models.device import resolve_device
from semsql.testing_video import Part, write_video
from semsql.video import Sampling, probe_video, sample_frames

PICTURES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
IMAGE_STAGES = ("clip", "caption", "tags", "faces", "face_vectors", "emotion", "content")


def decode_rate(path: Path, *, threads: bool, keyframes_only: bool = False) -> tuple[int, float]:
    started = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        frames = sum(1 for _ in container.decode(stream))
    return frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--stages", default=",".join(IMAGE_STAGES))
    parser.add_argument("--device", default=os.environ.get("SEMSQL_DEVICE", "auto"))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "video.json"
    )
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    shot = 5.0
    pictures = [Image.fromarray(getattr(skimage.data, name)()) for name in PICTURES]
    parts = [Part(shot, pictures[i % len(pictures)]) for i in range(int(args.seconds // shot))]

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        video = write_video(
            Path(folder) / "bench.mp4", parts, size=(width, height), fps=30, grain=True
        )
        encode_s = time.perf_counter() - started
        rows: list[dict[str, Any]] = []

        def row(step: str, frames: int, seconds: float) -> None:
            rows.append(
                {
                    "step": step,
                    "frames": frames,
                    "seconds": round(seconds, 3),
                    "frames_per_s": round(frames / seconds, 1),
                    "x_real_time": round(info.duration / seconds, 1),
                }
            )

        started = time.perf_counter()
        info = probe_video(video)
        row("probe", 2, time.perf_counter() - started)
        started = time.perf_counter()
        sampled = sample_frames(video)
        row(f"sample ({len(sampled)} kept)", int(info.duration * 30), time.perf_counter() - started)
        started = time.perf_counter()
        sparse = sample_frames(video, Sampling(every=10))
        row(
            f"sample 1/10 s, seeking ({len(sparse)})",
            int(info.duration * 30),
            time.perf_counter() - started,
        )
        row("decode only, 1 thread", *decode_rate(video, threads=False))
        row("decode only, threaded", *decode_rate(video, threads=True))
        row("keyframes only", *decode_rate(video, threads=True, keyframes_only=True))

        device = resolve_device(args.device)
        config = build_tiny_models(Path(folder) / "models")
        images = [frame.image for frame in sampled]
        stages = []
        for stage in args.stages.split(","):
            model = config.get(stage)
            if model is None:
                continue
            for result in bench_stage(stage, model, device, images, batch_size=8, repeat=2):
                stages.append(result)

    per_frame_s = sum(1 / s["items_per_s"] for s in stages if s["unit"] == "image")
    pipeline = {
        "frames_per_s": round(1 / per_frame_s, 1) if per_frame_s else None,
        "video_s_per_s": round(info.duration / (len(sampled) * per_frame_s), 1)
        if per_frame_s
        else None,
    }
    result = {
        "video": {
            "seconds": info.duration,
            "size": [width, height],
            "fps": 30,
            "codec": info.codec,
            "encode_s": round(encode_s, 1),
        },
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "decode": rows,
        "stages": stages,
        "pipeline": pipeline,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def print_table(result: dict[str, Any]) -> None:
    video = result["video"]
    print(
        f"{video['size'][0]}x{video['size'][1]} {video['codec']} {video['seconds']:.0f} s, "
        f"load average {result['load_average'][0]:.1f} on {result['cpus']} cores"
    )
    print(f"{'step':<28}{'frames':>8}{'seconds':>9}{'frames/s':>10}{'x real time':>13}")
    for row in result["decode"]:
        print(
            f"{row['step']:<28}{row['frames']:>8}{row['seconds']:>9.2f}"
            f"{row['frames_per_s']:>10.1f}{row['x_real_time']:>13.1f}"
        )
    print(f"\n{'stage':<16}{'unit':>6}{'items':>7}{'items/s':>10}")
    for row in result["stages"]:
        print(f"{row['stage']:<16}{row['unit']:>6}{row['items']:>7}{row['items_per_s']:>10.1f}")
    pipeline = result["pipeline"]
    print(
        f"\nall image stages on the sampled frames: {pipeline['frames_per_s']} frames/s, "
        f"{pipeline['video_s_per_s']} s of video per second"
    )


if __name__ == "__main__":
    main()
