"""Instructions the `semsql serve` process executes per GET /api/search (bench/serve.py's
search, 8 concurrent clients), counted by valgrind's callgrind: a figure that stays put on a
loaded machine, where CPU seconds and latencies do not (runs differ by a few percent with
how the requests interleave).

    python bench/serve_instructions.py [--requests 50] [--files 25] [--out FILE.json]

Needs valgrind. The server runs under callgrind (about 50x slower), counting only while the
measured requests run (--instr-atstart=no, callgrind_control -i on/off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
from scratch import bench_database
from serve import CLIENTS, SEARCH, free_port, http_getter, make_corpus


def clients(base: str, path: str, requests: int) -> None:
    getter = http_getter(base, path)
    calls = [getter(number) for number in range(CLIENTS)]

    def client(call: Callable[[], object]) -> None:
        for _ in range(requests):
            call()

    threads = [threading.Thread(target=client, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def callgrind(*arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=25, help="At least k=20 of them.")
    parser.add_argument("--requests", type=int, default=50, help="Per client.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve_instructions.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="semsql-bench-instructions-"))
    files = make_corpus(work / "photos", args.files)
    time.sleep(2.5)  # as bench/serve.py: files changed just now get no stat signature
    with bench_database("semsql_bench_instructions") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE semsql.stages SET enabled = false")
        port = free_port()
        env = {**os.environ, "SEMSQL_DATABASE_URL": url, "SEMSQL_HOME": str(work / "home")}
        counts = work / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={counts}", sys.executable, "-m", "semsql", "serve",
             "--port", str(port), "--media-dir", str(work / "media")],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                deadline = time.monotonic() + 600
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise SystemExit("semsql serve did not start") from None
                        time.sleep(0.5)
                sent = [("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
                answer = client.post("/api/assets", files=sent, data={"tags": "bench"})
                job = answer.json()["job_id"]
                while client.get(f"/api/jobs/{job}").json()["status"] not in (
                    "completed", "failed"
                ):  # fmt: skip
                    time.sleep(0.2)
            path = "/api/search?" + urlencode(SEARCH)
            clients(base, path, 20)  # warm: connections made, the statement prepared
            callgrind("-i", "on", str(server.pid))
            clients(base, path, args.requests)
            callgrind("-d", str(server.pid))
            callgrind("-i", "off", str(server.pid))
        finally:
            server.terminate()
            server.wait(120)
        (measured,) = work.glob("callgrind.out.*")  # the dump (callgrind.out: what came after)
        total = next(
            int(line.split()[1])
            for line in measured.read_text().splitlines()
            if line.startswith("summary:")
        )
    calls = CLIENTS * args.requests
    print(f"GET /api/search: {total / calls:,.0f} instructions per request ({calls} requests)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"clients": CLIENTS, "requests": calls, "instructions": total,
              "instructions_per_request": round(total / calls)}  # fmt: skip
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
