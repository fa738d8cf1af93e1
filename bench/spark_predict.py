"""Batch scoring on Spark against local ``predict``, on the same rows in one run (issue 29).

Both engines label the same Parquet file of short reviews (the sample's texts, drawn with
replacement) with the same registered Gemma-3-270M champion (``bench.champion``), each as the
``sentibridge predict`` command a user runs: ``--engine local`` (one process, torch on every
core) and ``--engine spark --spark-master local[2]`` (MLflow's ``spark_udf``, one Python worker
per task slot with one torch thread each). Reported per engine: wall seconds, rows/s, and the
peak RSS of the processes holding a model copy (the local process; each Spark Python worker),
sampled every 0.2 s. Spark's start-up (a session, no model) is timed apart. The two outputs'
labels are compared row by row.

    python -m bench.spark_predict                 # 10,000 rows -> bench/results/spark_predict.json
    python -m bench.spark_predict --rows 2000 --home /tmp/sentibridge-bench/serving-champion
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

from bench.champion import DEFAULT_HOME, champion_home
from bench.common import REPO, cli_command, cli_env, machine, write_result

RESULT = Path(__file__).parent / "results" / "spark_predict.json"
MASTER = "local[2]"


class PeakRSS(threading.Thread):
    """Peak RSS (MB) per process in a tree, sampled until stopped; ``pick`` chooses the processes."""

    def __init__(self, root: int, pick) -> None:
        super().__init__(daemon=True)
        self.root, self.pick, self.peaks, self._done = root, pick, {}, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                tree = [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in tree:
                try:
                    if self.pick(proc):
                        self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0.0), proc.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            time.sleep(0.2)

    def stop(self) -> dict[int, float]:
        self._done.set()
        self.join()
        return self.peaks


def _is_worker(proc: psutil.Process) -> bool:
    """A Spark Python worker (forked from pyspark.daemon), the process that holds a model copy."""
    return "pyspark.daemon" in " ".join(proc.cmdline()) and proc.parent() is not None and \
        "pyspark.daemon" in " ".join(proc.parent().cmdline())


def run_predict(home: Path, args: list[str], pick) -> tuple[dict, float, dict[int, float]]:
    """``sentibridge predict <args> --json`` in ``home``: (its JSON, wall seconds, peak RSS per picked process)."""
    started = time.perf_counter()
    proc = subprocess.Popen([*cli_command(), "predict", *args, "--json"], cwd=REPO, env=cli_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakRSS(proc.pid, pick)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    peaks = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"predict {' '.join(args)} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), seconds, peaks


def spark_startup_seconds() -> float:
    """Seconds to a ready ``local[2]`` session (JVM, Python gateway), without a model."""
    from sentibridge.inference.spark import spark_session

    started = time.perf_counter()
    session = spark_session(MASTER)
    session.range(1).count()  # the first job starts the Python-free executor path too
    seconds = time.perf_counter() - started
    session.stop()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="a home with a champion (made if missing)")
    args = parser.parse_args()

    home, version = champion_home(args.home)
    sample = pd.read_json(REPO / "data" / "sample" / "reviews.jsonl", lines=True)
    rows = sample.sample(n=args.rows, replace=True, random_state=0)[["text", "language"]].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="spark-predict-") as tmp:
        source = Path(tmp) / "rows.parquet"
        rows.assign(id=[f"r{k}" for k in range(len(rows))]).to_parquet(source)
        startup = spark_startup_seconds()
        local, local_s, local_peaks = run_predict(
            home, ["--input", str(source), "--output", str(Path(tmp) / "local.parquet")], lambda p: True)
        spark, spark_s, worker_peaks = run_predict(
            home, ["--engine", "spark", "--spark-master", MASTER, "--input", str(source), "--output", str(Path(tmp) / "spark")],
            _is_worker)
        expected, got = pd.read_parquet(Path(tmp) / "local.parquet"), pd.read_parquet(Path(tmp) / "spark")
        same_labels = float((expected["label"].to_numpy() == got["label"].to_numpy()).mean())
        max_score_diff = float((expected.filter(like="score_") - got.filter(like="score_")).abs().max().max())

    result = {
        "rows": args.rows, "model_version": version, "spark_master": MASTER, "machine": machine(),
        "local": {"seconds": round(local_s, 1), "rows_per_s": round(args.rows / local_s, 2),
                  "peak_rss_mb": round(max(local_peaks.values()), 0), "predicted": local["predicted"]},
        "spark": {"seconds": round(spark_s, 1), "rows_per_s": round(args.rows / spark_s, 2),
                  "startup_seconds": round(startup, 1), "model_copies": len(worker_peaks),
                  "peak_rss_mb_per_model_copy": round(max(worker_peaks.values(), default=0.0), 0),
                  "predicted": spark["predicted"]},
        "spark_over_local_rows_per_s": round(local_s / spark_s, 3),
        "same_labels": same_labels, "max_score_difference": max_score_diff,
    }
    print(f"{'engine':<22}{'seconds':>9}{'rows/s':>9}{'peak RSS MB':>13}")
    print(f"{'local (1 process)':<22}{local_s:>9.1f}{args.rows / local_s:>9.1f}{result['local']['peak_rss_mb']:>13.0f}")
    print(f"{'spark ' + MASTER:<22}{spark_s:>9.1f}{args.rows / spark_s:>9.1f}"
          f"{result['spark']['peak_rss_mb_per_model_copy']:>13.0f}  per model copy, {len(worker_peaks)} copies")
    print(f"spark/local rows/s: {result['spark_over_local_rows_per_s']:.2f}x; Spark start-up {startup:.1f} s; "
          f"same labels on {same_labels:.1%} of rows (max score difference {max_score_diff:.2g})")
    write_result(RESULT, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
