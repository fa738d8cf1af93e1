"""Peak memory of ``sentibridge predict``'s file path: streamed (``predict_file``) against the old
read-everything-then-write assembly.

For each size (10k, 100k, 1M rows of short texts, one in 500 rows bad) a CSV is generated in a
temp dir and labelled to ``--suffix`` in a fresh subprocess per mode, which reports its peak RSS
(``ru_maxrss``) and its RSS after imports (torch and transformers come with
``sentibridge.inference.predict``, and a real run has them loaded too).

The model is a stand-in whose ``predict_rows`` returns fixed scores: the real Gemma would take
hours for 1M rows on CPU, and its memory does not grow with the file anyway (it sees one chunk at
a time). What is measured is the I/O and assembly path around it. The two modes' outputs are
compared byte for byte (they match for CSV, TSV, JSONL and JSON; Parquet's column types differ).

    python -m bench.predict_memory                 # 10k, 100k, 1M; CSV out
    python -m bench.predict_memory --sizes 10000 100000 --suffix .parquet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "predict_memory.json"
LANGUAGES = ("en", "fr", "de", "es", "ar", "")


class StandIn:
    """``predict_rows`` with fixed scores: every good row is 'positive' at 0.7."""

    def predict_rows(self, rows, progress: bool = True):
        import numpy as np
        import pandas as pd

        from sentibridge.labels import SCORE_COLUMNS

        scores = np.tile([0.1, 0.2, 0.7], (len(rows), 1))
        return pd.DataFrame({"id": rows["id"], "pred": np.full(len(rows), 2),
                             **{c: scores[:, k] for k, c in enumerate(SCORE_COLUMNS)}})


def old_assembly(model: StandIn, input_path: Path, output_path: Path) -> None:
    """``cmd_predict`` before chunking: the whole file as one table, scored, filled in, written."""
    from sentibridge.inference.files import read_prediction_input, write_predictions
    from sentibridge.model.instructions import LABEL_WORDS

    rows = read_prediction_input(input_path)
    good = rows[rows["error"].isna()]
    scores = [f"score_{w}" for w in LABEL_WORDS]
    out = rows.assign(label=None, label_id=None, **{c: None for c in scores})
    if len(good):
        scored = model.predict_rows(good[["id", "text", "language"]].reset_index(drop=True), progress=False)
        index = good.index
        out.loc[index, "label"] = [LABEL_WORDS[k] for k in scored["pred"]]
        out.loc[index, "label_id"] = scored["pred"].to_numpy()
        for c in scores:
            out.loc[index, c] = scored[c].to_numpy()
    out = out[["row", "id", "text", "language", "label", "label_id", *scores, "error"]]
    write_predictions(out, output_path)


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def child(mode: str, input_path: Path, output_path: Path) -> None:
    """One labelling run; prints its numbers as JSON on the last line."""
    from sentibridge.inference.predict import predict_file

    start_rss = _rss_mib()
    began = time.perf_counter()
    if mode == "streamed":
        predict_file(StandIn(), input_path, output_path, progress=False)
    else:
        old_assembly(StandIn(), input_path, output_path)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1), "rss_after_imports_mib": round(start_rss, 1)}))


def write_input(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,text,language\n")
        for i in range(rows):
            text = "" if i % 500 == 499 else f"review {i}: the service was fine, would come back"
            handle.write(f"r{i},\"{text}\",{LANGUAGES[i % len(LANGUAGES)]}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--suffix", default=".csv", help="output format")
    parser.add_argument("--modes", nargs="+", default=["streamed", "old"], choices=["streamed", "old"])
    parser.add_argument("--child", nargs=3, metavar=("MODE", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.sizes:
            input_path = Path(tmp) / f"in_{rows}.csv"
            write_input(input_path, rows)
            for mode in args.modes:
                output_path = Path(tmp) / f"out_{rows}_{mode}{args.suffix}"
                child_cmd = [sys.executable, "-m", "bench.predict_memory", "--child", mode, str(input_path), str(output_path)]
                done = subprocess.run(child_cmd, check=True, capture_output=True, text=True)
                run = json.loads(done.stdout.strip().splitlines()[-1])
                run.update(mode=mode, rows=rows, input_mib=round(input_path.stat().st_size / 2**20, 1),
                           output_mib=round(output_path.stat().st_size / 2**20, 1))
                run["sha256"] = hashlib.sha256(output_path.read_bytes()).hexdigest()
                results.append(run)
                output_path.unlink()
                print(f"{mode:>8} {rows:>9,} rows: {run['seconds']:6.1f} s, peak {run['peak_rss_mib']:7.1f} MiB", flush=True)
            input_path.unlink()
            digests = {r["sha256"] for r in results if r["rows"] == rows}
            print(f"  outputs byte-identical across modes: {len(digests) == 1}")

    smallest = min(args.sizes)
    base = {r["mode"]: r["peak_rss_mib"] for r in results if r["rows"] == smallest}
    for r in results:
        r["peak_vs_smallest"] = round(r["peak_rss_mib"] / base[r["mode"]], 2)
        r["growth_over_imports_mib"] = round(r["peak_rss_mib"] - r["rss_after_imports_mib"], 1)
    print(f"\n{'mode':>8} {'rows':>10} {'input MiB':>9} {'seconds':>8} {'peak RSS MiB':>12} {'above imports':>13} "
          f"{'vs ' + format(smallest, ','):>10}")
    for r in results:
        print(f"{r['mode']:>8} {r['rows']:>10,} {r['input_mib']:>9} {r['seconds']:>8} {r['peak_rss_mib']:>12} "
              f"{r['growth_over_imports_mib']:>13} {r['peak_vs_smallest']:>10}")
    # Imported here, not at the top: the children run this file too, and measure their memory after imports.
    from bench.common import write_result

    write_result(RESULT, {"suffix": args.suffix, "stand_in_model": "fixed scores (no Gemma)", "runs": results})


if __name__ == "__main__":
    main()
