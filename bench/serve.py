"""`semsql serve` against the same work done without it, side by side in one run:

  search      GET /api/search vs the same semsql.search call from psycopg (run_search), with
              8 concurrent clients on loopback, bounded runs, interleaved rounds: p50/p95 and
              the p95 the HTTP layer adds (target <= 5 ms)
  thumbnail   GET /api/assets/{id}/thumbnail served from the cache, one client: p95 (<= 2 ms)
  page        GET / with a query: the search page's server render, first and p95 (<= 300 ms)
  upload      POST /api/assets of 100 JPEGs until the job has read them, vs run_ingest (what
              `semsql ingest` runs) on the same files, alternated, --upload-rounds times:
              the medians' files/s (>= 0.8x); and the upload sent at --network-mbps, as from
              another machine: when the job has read them, beside what the sending takes

    python bench/serve.py [--files 100] [--requests 200] [--out bench/results/serve.json]

The server is a real `semsql serve` process (uvicorn); the models are off (no worker). Uses
SEMSQL_DATABASE_URL when set (a throwaway database is made there), else a throwaway embedded
server.
"""

from __future__ import annotations

import argparse
import http.client as http_client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from corpus import noise_image
from scratch import bench_database

from semsql import database
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.search import SearchRequest, run_search
from semsql.sources import iter_candidates

CLIENTS = 8
SEARCH = {"query": "img bench", "tag": "bench", "k": 20}


def make_corpus(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = noise_image((1024, 768), seed=1)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if not path.exists():
            image = base.copy()
            image.putpixel((i % 1024, i // 1024 % 768), (i % 256, 255 - i % 256, 9))
            image.save(path, quality=90)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Measured:
    """Milliseconds of each call, and the CPU seconds the clients' threads spent."""

    latencies: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0

    def __iadd__(self, other: Measured) -> Measured:
        self.latencies += other.latencies
        self.client_cpu_s += other.client_cpu_s
        return self


def concurrent_latencies(call: Callable[[int], Callable[[], object]], requests: int) -> Measured:
    """CLIENTS threads at once, `requests` calls each; call(i) makes client i's own callable
    (its connection or HTTP client)."""
    measured = Measured()
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        run = call(number)
        run()  # warm: a connection made, a plan cached
        mine = []
        start.wait()
        cpu = time.thread_time()
        for _ in range(requests):
            began = time.perf_counter()
            run()
            mine.append((time.perf_counter() - began) * 1000)
        cpu = time.thread_time() - cpu
        with lock:
            measured.latencies.extend(mine)
            measured.client_cpu_s += cpu

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return measured


def http_getter(base: str, path: str) -> Callable[[int], Callable[[], object]]:
    """What concurrent_latencies calls: client i's GET of path, decoded from JSON."""

    def client(number: int) -> Callable[[], object]:
        # http.client, not httpx: a keep-alive connection with the least client-side work, so
        # that what is measured is the server's.
        connection = http_client.HTTPConnection("127.0.0.1", urlsplit(base).port, timeout=60)

        def call() -> object:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == 200, body
            return json.loads(body)

        return call

    return client


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children that run (uvicorn's worker
    processes), from /proc; 0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu_s(int(child)) for child in children)


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "calls": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
    }


def cpu_summary(measured: Measured, server_cpu_s: float | None = None) -> dict[str, float]:
    """Latencies, and the CPU milliseconds per call of the clients (and of the server)."""
    calls = len(measured.latencies)
    found = {**summary(measured.latencies),
             "client_cpu_ms": round(measured.client_cpu_s * 1000 / calls, 3)}  # fmt: skip
    if server_cpu_s is not None:
        found["server_cpu_ms"] = round(server_cpu_s * 1000 / calls, 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200, help="Per client and round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--upload-rounds", type=int, default=3, help="Ingests and uploads, alternated."
    )
    parser.add_argument(
        "--network-mbps", type=float, default=400.0,
        help="An upload also sent no faster than this, as from across a network (Mbit/s).",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="semsql serve --workers")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="semsql-bench-serve-"))
    files = make_corpus(work / "photos", args.files)
    time.sleep(2.5)  # files changed just now get no stat signature: as a user's, settled

    with bench_database("semsql_bench_serve") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE semsql.stages SET enabled = false")
        port = free_port()
        env = {**os.environ, "SEMSQL_DATABASE_URL": url, "SEMSQL_HOME": str(work / "home")}
        server = subprocess.Popen(
            [sys.executable, "-m", "semsql", "serve", "--port", str(port),
             "--media-dir", str(work / "media"), "--workers", str(args.workers)],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            results = run_all(args, url, base, files, server.pid)
        finally:
            server.terminate()
            server.wait(30)
    report(args, results)


def wait_for_server(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("semsql serve did not start")


def ingest_seconds(url: str, files: list[Path], collection: str) -> float:
    """What `semsql ingest FOLDER --collection C` runs, timed."""
    with database.connect(url) as conn:
        began = time.perf_counter()
        job_id = create_job(conn, collection, {"bench": True})
        candidates = list(iter_candidates([str(files[0].parent)]))
        done = run_ingest(conn, job_id, candidates, IngestOptions(collection=collection))
        seconds = time.perf_counter() - began
    assert done.new == len(files), done.as_dict()
    return seconds


def upload_seconds(
    base: str, files: list[Path], collection: str, rate: float | None = None
) -> float:
    """POST /api/assets of the files (read from disk by the client) until the job has read
    them all, timed; with a `rate` (bytes/s), the body is sent no faster, as over a network."""
    with httpx.Client(base_url=base, timeout=600) as client:
        began = time.perf_counter()
        sent = [("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
        fields = {"collection": collection, "tags": "bench"}
        request = client.build_request("POST", "/api/assets", files=sent, data=fields)
        if rate is not None:
            body = request.read()
            request = client.build_request(
                "POST", "/api/assets", content=paced(body, rate, began),
                headers={"content-type": request.headers["content-type"],
                         "content-length": str(len(body))},
            )  # fmt: skip
        answer = client.send(request)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        while (job := client.get(f"/api/jobs/{job_id}").json())["ingested_at"] is None:
            assert job["status"] != "failed", job
            time.sleep(0.02)
        seconds = time.perf_counter() - began
    assert job["new_count"] == len(files), job
    return seconds


def paced(body: bytes, rate: float, began: float, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The body in chunks, each sent once `rate` bytes/s since `began` allow it."""
    for start in range(0, len(body), chunk):
        time.sleep(max(0.0, began + start / rate - time.perf_counter()))
        yield body[start : start + chunk]


def run_all(
    args: argparse.Namespace, url: str, base: str, files: list[Path], server_pid: int
) -> dict:
    wait_for_server(base)
    results: dict = {}

    # upload vs ingest, on the same files, alternated, each in a collection of its own (so that
    # none is a duplicate): the first round now, so that the searches below search these 200
    # assets; the others after them
    ingest_times = [ingest_seconds(url, files, "cli0")]
    upload_times = [upload_seconds(base, files, "web0")]

    # search: HTTP vs psycopg, rounds interleaved
    request = SearchRequest(query=SEARCH["query"], tags=(SEARCH["tag"],), k=SEARCH["k"])

    def direct(number: int) -> Callable[[], object]:
        conn = database.connect(url, autocommit=True)
        conn.execute("SET ROLE semsql_analyst")  # as the server's reads run
        return lambda: run_search(conn, request)

    http = http_getter(base, "/api/search?" + urlencode(SEARCH))
    with database.connect(url) as conn:
        hits, _ = run_search(conn, request)
    assert len(hits) == SEARCH["k"], len(hits)
    direct_runs, http_runs, server_cpu_s = Measured(), Measured(), 0.0
    for _ in range(args.rounds):
        direct_runs += concurrent_latencies(direct, args.requests)
        before = process_cpu_s(server_pid)
        http_runs += concurrent_latencies(http, args.requests)
        server_cpu_s += process_cpu_s(server_pid) - before
    results["search"] = {
        "psycopg": cpu_summary(direct_runs),
        "http": cpu_summary(http_runs, server_cpu_s),
    }
    results["search"]["added_p95_ms"] = round(
        results["search"]["http"]["p95_ms"] - results["search"]["psycopg"]["p95_ms"], 2
    )

    # cached thumbnails and the search page, one client
    with httpx.Client(base_url=base) as client:
        ids = [hit.asset_id for hit in hits]
        for asset_id in ids:  # made and cached
            assert client.get(f"/api/assets/{asset_id}/thumbnail?size=256").status_code == 200
        thumbnails = []
        for turn in range(args.requests * 2):
            began = time.perf_counter()
            answer = client.get(f"/api/assets/{ids[turn % len(ids)]}/thumbnail?size=256")
            thumbnails.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200
        results["thumbnail"] = summary(thumbnails)
        pages = []
        for _ in range(50):
            began = time.perf_counter()
            answer = client.get("/", params=SEARCH)
            pages.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200 and "tile" in answer.text
        results["page"] = {**summary(pages), "first_ms": round(pages[0], 2)}

    paced_times = []
    rate = args.network_mbps * 1e6 / 8
    for turn in range(args.upload_rounds):
        if turn > 0:
            ingest_times.append(ingest_seconds(url, files, f"cli{turn}"))
            upload_times.append(upload_seconds(base, files, f"web{turn}"))
        paced_times.append(upload_seconds(base, files, f"net{turn}", rate))
    body_mb = sum(f.stat().st_size for f in files) / 1e6
    ingest_s, upload_s = statistics.median(ingest_times), statistics.median(upload_times)
    results["upload"] = {
        "files": len(files),
        "rounds": args.upload_rounds,
        "ingest_files_per_s": round(len(files) / ingest_s, 1),
        "upload_files_per_s": round(len(files) / upload_s, 1),
        "ratio": round(ingest_s / upload_s, 2),
        "ratios": [round(i / u, 2) for i, u in zip(ingest_times, upload_times, strict=True)],
        "network_mbps": args.network_mbps,
        "network_upload_s": round(statistics.median(paced_times), 3),
        "network_transfer_s": round(body_mb * 8 / args.network_mbps, 3),
    }
    return results


def report(args: argparse.Namespace, results: dict) -> None:
    search, upload = results["search"], results["upload"]
    targets = {
        "search adds <= 5 ms p95": search["added_p95_ms"] <= 5,
        "cached thumbnail <= 2 ms p95": results["thumbnail"]["p95_ms"] <= 2,
        "search page first render <= 300 ms": results["page"]["first_ms"] <= 300,
        "upload >= 0.8x ingest files/s": upload["ratio"] >= 0.8,
    }
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"semsql serve --workers {args.workers}"
    )
    print(f"{'measure':<34} {'p50 ms':>8} {'p95 ms':>8} {'client CPU':>11} {'server CPU':>11}")
    for label, row in (
        (f"search via psycopg ({CLIENTS} clients)", search["psycopg"]),
        (f"GET /api/search ({CLIENTS} clients)", search["http"]),
        ("cached thumbnail", results["thumbnail"]),
        ("search page", results["page"]),
    ):
        cpu = "".join(
            f" {row[key]:>8.3f} ms" if key in row else " " * 12
            for key in ("client_cpu_ms", "server_cpu_ms")
        )
        print(f"{label:<34} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f}{cpu}")
    print("(CPU: milliseconds per call, of the clients' threads and of the server's processes)")
    print(f"search page first render: {results['page']['first_ms']:.1f} ms")
    print(f"HTTP adds {search['added_p95_ms']:.2f} ms at p95")
    print(
        f"{upload['files']} JPEGs: ingest {upload['ingest_files_per_s']} files/s, upload "
        f"{upload['upload_files_per_s']} files/s ({upload['ratio']}x; medians of "
        f"{upload['rounds']} rounds, each round's ratio {upload['ratios']})"
    )
    print(
        f"the same upload sent at {upload['network_mbps']:g} Mbit/s: done "
        f"{upload['network_upload_s']:.2f} s after it began; sending alone takes "
        f"{upload['network_transfer_s']:.2f} s"
    )
    for target, met in targets.items():
        print(f"  {'met ' if met else 'MISS'}  {target}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"cpus": os.cpu_count(), "load_average": load, "machine": platform.machine(),
              "clients": CLIENTS, "server_workers": args.workers, "results": results,
              "targets": targets}  # fmt: skip
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
