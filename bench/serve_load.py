"""The served model under load and bad requests (issue 29).

``mlflow models serve`` of the ``@champion`` (the real Gemma-3-270M, ``champion.py``) runs on
loopback. A bounded asyncio load generator (aiohttp) runs 1, 4 and 16 concurrent clients for
``--seconds`` each, with requests of 1 and 32 rows of the sample's texts, and reports rows/s,
p50/p95/p99 latency and errors (a good request that did not come back 200 with one labelled row
per input row). The baseline is the same server with 1 client, in the same run: each row's
rows/s is also given as a ratio to it. A second server with 2 workers, one torch thread each,
answers the 16-client rows, for the "workers per core" advice.

Mixed into every load (one client sends one every ``BAD_EVERY`` requests, in turn): malformed
JSON, a missing ``text`` column, a 1 MB text, bytes that are not UTF-8, and an unknown language.
Each must get a 4xx with a message or a 200 with a per-row ``error`` (the 1 MB text: labelled,
``truncated``), and the good request after it must succeed.

    python -m bench.serve_load                    # -> bench/results/serve_load.json (about 12 min)
    python -m bench.serve_load --seconds 10 --clients 1 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESULT = Path(__file__).parent / "results" / "serve_load.json"
BAD_EVERY = 10


def _records(*rows: dict) -> bytes:
    return json.dumps({"dataframe_records": list(rows)}).encode()


#: name -> (request body, what a correct answer is). Shared with the test of the served model.
BAD_REQUESTS: dict[str, tuple[bytes, str]] = {
    "malformed JSON": (b'{"dataframe_records": [{"text": "unterminated', "4xx"),
    "missing text column": (_records({"review": "great phone", "language": "en"}), "4xx"),
    "1 MB text": (_records({"text": "This phone is great. " * 50_000, "language": "en"}), "truncated"),
    "not UTF-8 bytes": (b'{"dataframe_records": [{"text": "caf\xe9 cr\xe8me \xff\xfe", "language": "fr"}]}', "4xx or row error"),
    "unknown language": (_records({"text": "great phone", "language": "klingon"}), "row error"),
}


def judge(kind: str, status: int, body: str) -> tuple[bool, str]:
    """Whether the server answered bad request ``kind`` as it should, and what it said (shortened)."""
    expected = BAD_REQUESTS[kind][1]
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        payload = {}
    if 400 <= status < 500:
        message = str(payload.get("message", body))[:160]
        return expected.startswith("4xx") and bool(message.strip()), f"{status}: {message}"
    if status == 200:
        row = (payload.get("predictions") or [{}])[0]
        if expected == "truncated":
            return bool(row.get("truncated")) and row.get("label") is not None, f"200: label {row.get('label')}, truncated"
        error = row.get("error")
        return expected.endswith("row error") and bool(error) and row.get("label") is None, f"200: row error {error!r}"
    return False, f"{status}: {body[:160]}"


@dataclass
class Load:
    """What one (clients, rows) load saw."""

    latencies: list[float] = field(default_factory=list)
    rows: int = 0
    errors: list[str] = field(default_factory=list)
    bad: dict[str, list[str]] = field(default_factory=dict)


async def _client(session, url: str, texts: list[dict], rows: int, deadline: float, load: Load, rng: random.Random,
                  sends_bad: bool) -> None:
    sent = 0
    kinds = list(BAD_REQUESTS)
    while time.perf_counter() < deadline:
        sent += 1
        if sends_bad and sent % BAD_EVERY == 0:
            kind = kinds[(sent // BAD_EVERY - 1) % len(kinds)]
            async with session.post(url, data=BAD_REQUESTS[kind][0], headers={"Content-Type": "application/json"}) as reply:
                ok, said = judge(kind, reply.status, await reply.text())
            load.bad.setdefault(kind, []).append(("ok " if ok else "WRONG ") + said)
            continue
        batch = [rng.choice(texts) for _ in range(rows)]
        started = time.perf_counter()
        async with session.post(url, data=_records(*batch), headers={"Content-Type": "application/json"}) as reply:
            body = await reply.text()
            status = reply.status
        latency = time.perf_counter() - started
        predictions = json.loads(body).get("predictions", []) if status == 200 else []
        if status != 200 or len(predictions) != rows or any(p.get("label") is None for p in predictions):
            load.errors.append(f"{status}: {body[:200]}")
            continue
        load.latencies.append(latency)
        load.rows += rows


async def run_load(url: str, texts: list[dict], clients: int, rows: int, seconds: float) -> tuple[Load, float]:
    import aiohttp

    load = Load()
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients + 1)) as session:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(_client(session, url, texts, rows, deadline, load, random.Random(k), k == 0)
                               for k in range(clients)))
        return load, time.perf_counter() - started


def serve(home: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    """``mlflow models serve`` of the champion; each worker gets ``cores // workers`` torch threads."""
    # Imported here, as in main: the served model's test imports this module for BAD_REQUESTS and judge alone.
    from bench.champion import tracking_uri
    from bench.common import cli_env

    env = {**cli_env(home), "MLFLOW_TRACKING_URI": tracking_uri(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    handle = log.open("w")
    return subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
                             "models:/sentibridge-sentiment@champion", "--env-manager", "local", "-h", "127.0.0.1",
                             "-p", str(port), "--workers", str(workers)],
                            env=env, stdout=handle, stderr=subprocess.STDOUT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow models serve exited {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"mlflow models serve not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def summarise(load: Load, seconds: float) -> dict:
    latencies = np.asarray(load.latencies) * 1000
    pct = (lambda q: round(float(np.percentile(latencies, q)), 0)) if len(latencies) else (lambda q: None)
    bad_ok = {kind: all(said.startswith("ok ") for said in answers) for kind, answers in load.bad.items()}
    return {"rows_per_s": round(load.rows / seconds, 2), "requests": len(load.latencies), "p50_ms": pct(50),
            "p95_ms": pct(95), "p99_ms": pct(99), "errors": len(load.errors), "first_errors": load.errors[:3],
            "bad_requests": {kind: {"answered_right": bad_ok[kind], "sent": len(answers), "said": answers[0][:200]}
                             for kind, answers in load.bad.items()}}


def main() -> int:
    from bench.champion import DEFAULT_HOME, champion_home
    from bench.common import REPO, machine, write_result

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="a home with a champion (made if missing)")
    args = parser.parse_args()

    home, version = champion_home(args.home)
    import pandas as pd

    sample = pd.read_json(REPO / "data" / "sample" / "reviews.jsonl", lines=True)
    texts = sample[["text", "language"]].to_dict(orient="records")
    plan = [(1, clients, rows) for rows in args.rows for clients in args.clients]
    plan += [(2, max(args.clients), rows) for rows in args.rows]
    results: list[dict] = []
    for workers in sorted({w for w, _, _ in plan}):
        port, log = free_port(), home / f"serve-{workers}.log"
        server = serve(home, port, workers, log)
        try:
            started = time.perf_counter()
            wait_until_up(f"http://127.0.0.1:{port}/ping", server, log)
            print(f"server with {workers} worker(s) up in {time.perf_counter() - started:.0f} s", flush=True)
            url = f"http://127.0.0.1:{port}/invocations"
            asyncio.run(run_load(url, texts, 1, 1, 5))  # warm-up: the first request loads lazily-built parts
            for _, clients, rows in [p for p in plan if p[0] == workers]:
                load, seconds = asyncio.run(run_load(url, texts, clients, rows, args.seconds))
                row = {"workers": workers, "clients": clients, "rows_per_request": rows, **summarise(load, seconds)}
                results.append(row)
                print(f"workers {workers} clients {clients:>2} rows {rows:>2}: {row['rows_per_s']:>7.1f} rows/s  "
                      f"p50 {row['p50_ms']} p95 {row['p95_ms']} p99 {row['p99_ms']} ms  errors {row['errors']}  "
                      f"bad requests answered right: {all(b['answered_right'] for b in row['bad_requests'].values())}",
                      flush=True)
            alive = server.poll() is None
            print(f"server alive after the load: {alive}", flush=True)
            for row in results:
                if row["workers"] == workers:
                    row["server_alive_after"] = alive
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    for row in results:
        base = next((r for r in results if r["workers"] == 1 and r["clients"] == 1 and
                     r["rows_per_request"] == row["rows_per_request"]), None)
        row["rows_per_s_over_1_client"] = round(row["rows_per_s"] / base["rows_per_s"], 2) if base and base["rows_per_s"] else None

    print(f"\n{'workers':>7} {'clients':>7} {'rows':>4} {'rows/s':>8} {'x 1 client':>10} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'errors':>6}")
    for r in results:
        print(f"{r['workers']:>7} {r['clients']:>7} {r['rows_per_request']:>4} {r['rows_per_s']:>8.1f} "
              f"{r['rows_per_s_over_1_client'] or 0:>10.2f} {r['p50_ms'] or 0:>7.0f} {r['p95_ms'] or 0:>7.0f} "
              f"{r['p99_ms'] or 0:>7.0f} {r['errors']:>6}")
    bad = {kind: all(r["bad_requests"].get(kind, {}).get("answered_right", True) for r in results) for kind in BAD_REQUESTS}
    said = {kind: next((r["bad_requests"][kind]["said"] for r in results if kind in r["bad_requests"]), None)
            for kind in BAD_REQUESTS}
    print("\nbad requests:")
    for kind in BAD_REQUESTS:
        print(f"  {kind:<20} {'answered right' if bad[kind] else 'WRONG':<15} {said[kind]}")
    payload = {"model_version": version, "seconds_per_load": args.seconds, "machine": machine(),
               "bad_every": BAD_EVERY, "loads": results, "bad_requests_answered_right": bad, "bad_request_answers": said}
    write_result(RESULT, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
