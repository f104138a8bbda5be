"""Fusion against its own signals: P@10 of the fused ranking (semsql.search's defaults), of the
document-text vector alone and of keywords alone, on a composed catalog with exact ground truth.

The catalog (--assets, default 2,000; imported with `semsql ingest --manifest`, vectors by
`semsql worker` with the shipped MiniLM, no CLIP) has captions composed from a subject, a
setting and a moment, each said in one of several wordings. Query groups:

  paraphrase  "<subject> in the <setting>" in a wording that no caption of the intended assets
              uses (no shared word): relevant = every asset of that subject and setting. The
              same words do occur in captions of the other assets (the subject elsewhere, the
              setting with another subject), where keywords find the wrong assets;
  same words  the same in the words of some of the intended captions ("young dog in the sandy
              beach"): keywords find those first;
  rare word   a word that only a few captions have ("zeppelin"): relevant = those assets;
  rare+filler the same word in a sentence of words no caption has ("a picture with a
              zeppelin in it");
  file name   a camera file name ("IMG 4711"): relevant = that one file;
  name        a person of the catalog ("Ana Lima"): relevant = the assets showing them.

Every query runs through `semsql eval` (qrels JSONL) against a running `semsql worker`. With
--compare-with REV, the fusion of sql/042_search_plan.sql at that git revision is measured as
well (applied to the same database, then the current one again).

    python bench/fusion.py [--assets 2000] [--compare-with main] [--out bench/results/fusion.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from PIL import Image

from semsql.testing import scratch_database, scratch_server

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "semsql_bench_fusion"

# Each concept's wordings; the first is the query's, never used for the intended assets.
SUBJECTS = {
    "dog": ["puppy", "young dog", "hound", "canine companion"],
    "cat": ["kitten", "tabby cat", "house cat", "feline"],
    "horse": ["pony", "stallion", "mare", "thoroughbred horse"],
    "child": ["toddler", "little boy", "small girl", "kid"],
    "couple": ["newlyweds", "bride and groom", "married pair", "husband and wife"],
    "cyclist": ["bicyclist", "man on a bike", "woman riding a bicycle", "racing cyclist"],
    "chef": ["cook", "chef in whites", "pastry chef", "line chef"],
    "musician": ["guitarist", "violin player", "drummer", "singer with a microphone"],
    "old man": ["elderly gentleman", "grandfather", "old man", "senior citizen"],
    "car": ["automobile", "vintage car", "red sedan", "sports coupe"],
    "boat": ["sailboat", "fishing boat", "yacht", "wooden rowboat"],
    "bird": ["seagull", "parrot", "pigeon", "songbird"],
}
SETTINGS = {
    "beach": ["seaside", "sandy beach", "shore by the ocean", "coastline"],
    "snow": ["blizzard", "snowy field", "winter snowfall", "frozen landscape"],
    "city": ["downtown", "busy city street", "urban avenue", "town square"],
    "forest": ["woodland", "pine forest", "grove of tall trees", "jungle"],
    "kitchen": ["galley", "home kitchen", "restaurant kitchen", "scullery"],
    "mountain": ["alpine peak", "mountain trail", "rocky summit", "high hills"],
    "garden": ["backyard", "flower garden", "lawn with roses", "vegetable patch"],
    "night": ["after dark", "at night", "under the moonlight", "late evening"],
    "rain": ["downpour", "rainy day", "wet weather", "drizzle"],
    "stage": ["concert hall", "theatre stage", "auditorium", "festival podium"],
}
MOMENTS = ["photographed last summer", "in a candid moment", "captured from afar",
           "seen in close-up", "on a holiday trip", "during a family outing", ""]  # fmt: skip
RARE_WORDS = ["zeppelin", "kaleidoscope", "gondola", "sombrero", "accordion", "lighthouse",
              "unicycle", "telescope"]  # fmt: skip
PEOPLE = ["Ana Lima", "Joe Park", "Sofia Rossi", "Werner Vogels"]
QUERY_PAIRS = 40
FILE_NAMES = 8


def compose(assets: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Manifest rows and qrels (each with its group) of the catalog."""
    rng = random.Random(seed)
    pairs = [(s, t) for s in SUBJECTS for t in SETTINGS]
    query_pairs = set(rng.sample(pairs, QUERY_PAIRS))
    rows: list[dict[str, Any]] = []
    members: dict[tuple[str, str], list[int]] = {}
    for n in range(assets):
        subject, setting = pairs[n % len(pairs)]
        first = 1 if (subject, setting) in query_pairs else 0  # no query wording for them
        said = rng.choice(SUBJECTS[subject][first:])
        where = rng.choice(SETTINGS[setting][first:])
        moment = rng.choice(MOMENTS)
        caption = " ".join(filter(None, [f"A {said} in the {where}", moment])).strip() + "."
        uri = f"photos/{n:05}.png"
        rows.append({"uri": uri, "caption": caption, "tags": [], "people": []})
        members.setdefault((subject, setting), []).append(n)
    qrels: list[dict[str, Any]] = []
    for subject, setting in sorted(query_pairs):
        query = f"{SUBJECTS[subject][0]} in the {SETTINGS[setting][0]}"
        qrels.append({"group": "paraphrase", "query": query,
                      "relevant": members[(subject, setting)]})  # fmt: skip
    for subject, setting in sorted(query_pairs):
        query = f"{SUBJECTS[subject][1]} in the {SETTINGS[setting][1]}"
        qrels.append({"group": "same words", "query": query,
                      "relevant": members[(subject, setting)]})  # fmt: skip
    picks = rng.sample(range(assets), len(RARE_WORDS) * 4 + FILE_NAMES + len(PEOPLE) * 5)
    for w, word in enumerate(RARE_WORDS):
        chosen = picks[w * 4 : w * 4 + 4]
        for n in chosen:
            rows[n]["caption"] = rows[n]["caption"].rstrip(".") + f", next to a {word}."
        qrels.append({"group": "rare word", "query": word, "relevant": chosen})
        qrels.append({"group": "rare+filler", "query": f"a picture with a {word} in it",
                      "relevant": chosen})  # fmt: skip
    start = len(RARE_WORDS) * 4
    for f, n in enumerate(picks[start : start + FILE_NAMES]):
        name = f"IMG_{4711 + 37 * f}"
        rows[n]["uri"] = f"photos/{name}.png"
        qrels.append({"group": "file name", "query": name.replace("_", " "), "relevant": [n]})
    start += FILE_NAMES
    for p, person in enumerate(PEOPLE):
        chosen = picks[start + p * 5 : start + p * 5 + 5]
        for n in chosen:
            rows[n]["people"] = [person]
        qrels.append({"group": "name", "query": person, "relevant": chosen})
    for qrel in qrels:  # row numbers to uris, now that every file has its name
        qrel["relevant"] = [rows[n]["uri"] for n in qrel["relevant"]]
    return rows, qrels


def write_catalog(folder: Path, rows: list[dict[str, Any]]) -> Path:
    for n, row in enumerate(rows):
        path = folder / row["uri"]
        path.parent.mkdir(parents=True, exist_ok=True)
        # Distinct content for each file (ingest deduplicates by SHA-256).
        Image.new("RGB", (8, 8), (n % 256, n // 256 % 256, 90)).save(path)
    manifest = folder / "catalog.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def semsql(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "semsql.cli", *args], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout


def wait_for_worker(url: str, worker: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError("the worker exited")
            row = conn.execute("SELECT count(*) FROM semsql.live_workers() "
                               "WHERE 'text' = ANY (query_spaces)").fetchone()  # fmt: skip
            if row and row[0]:
                return
            time.sleep(0.5)
    raise RuntimeError("no worker answers embed_text")


def evaluate(env: dict[str, str], qrels_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        semsql(env, "eval", str(qrels_path), "--json", "--embed", "worker")
    )
    return result


def by_group(result: dict[str, Any], groups: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Group -> signal -> mean P@10 and MRR over the group's queries."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for group in dict.fromkeys(groups):
        rows = [q for q, g in zip(result["per_query"], groups, strict=True) if g == group]
        table[group] = {
            signal: {
                metric: sum(r["signals"][signal]["metrics"][metric] for r in rows) / len(rows)
                for metric in ("P@10", "MRR", "nDCG@10")
            }
            for signal in result["signals"]
        }
    return table


def git_show(spec: str) -> str:
    command = ["git", "-C", str(ROOT), "show", spec]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def apply_fusion(url: str, sql_text: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql_text)  # type: ignore[call-overload]  # a file of statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--compare-with", metavar="REV", help="also measure 042's fusion at REV")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/fusion.json")
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (on a configured server)"
    )
    args = parser.parse_args()
    rows, qrels = compose(args.assets, args.seed)
    groups = [q.pop("group") for q in qrels]
    folder = Path(tempfile.mkdtemp(prefix="semsql-bench-fusion-"))
    manifest = write_catalog(folder, rows)
    qrels_path = folder / "qrels.jsonl"
    qrels_path.write_text("".join(json.dumps(q) + "\n" for q in qrels))
    results: dict[str, Any] = {"assets": args.assets, "seed": args.seed, "queries": {}}
    with (
        scratch_server(settings={"fsync": "off"}) as server,
        scratch_database(server, DATABASE, keep=args.keep) as url,
    ):
        env = dict(os.environ, SEMSQL_DATABASE_URL=url)
        for stage in ("CAPTION", "TAGS", "FACES", "FACE_VECTORS", "EMOTION", "CLIP"):
            env[f"SEMSQL_MODEL_{stage}"] = "off"
        semsql(env, "init")
        started = time.perf_counter()
        semsql(env, "ingest", "--manifest", str(manifest))
        semsql(env, "worker", "--until-idle", "--tasks", "text", "--device", "cpu")
        print(
            f"catalog of {args.assets} built in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        worker = subprocess.Popen([sys.executable, "-m", "semsql.cli", "worker", "--tasks", "text",
                                   "--device", "cpu"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for_worker(url, worker)
            runs = {"now": None}
            if args.compare_with:
                runs = {args.compare_with: args.compare_with, "now": None}
            for label, revision in runs.items():
                current = (ROOT / "sql/042_search_plan.sql").read_text()
                if revision:
                    old = git_show(f"{revision}:sql/042_search_plan.sql")
                    apply_fusion(url, old)
                try:
                    result = evaluate(env, qrels_path)
                finally:
                    apply_fusion(url, current)
                results["queries"][label] = by_group(result, groups)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, groups)
    print(f"wrote {args.out}", file=sys.stderr)


def print_table(results: dict[str, Any], groups: list[str]) -> None:
    counts = {g: groups.count(g) for g in dict.fromkeys(groups)}
    print(f"{'fusion':<8} {'group':<11} {'queries':>7}  "
          f"{'fused P@10':>10} {'text P@10':>9} {'keyword P@10':>12}  "
          f"{'fused MRR':>9} {'text MRR':>8} {'keyword MRR':>11}")  # fmt: skip
    for label, table in results["queries"].items():
        for group, signals in table.items():
            p = [signals[s]["P@10"] for s in ("fused", "text", "keyword")]
            m = [signals[s]["MRR"] for s in ("fused", "text", "keyword")]
            print(f"{label:<8} {group:<11} {counts[group]:>7}  {p[0]:>10.3f} {p[1]:>9.3f} "
                  f"{p[2]:>12.3f}  {m[0]:>9.3f} {m[1]:>8.3f} {m[2]:>11.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
