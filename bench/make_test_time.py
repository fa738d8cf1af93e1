"""How long `make test` takes on a fresh clone, against the 15-minute aim (issue 28).

``--run`` clones this repository's HEAD into a temporary folder and runs ``bash .ci/run`` there
(the CI entry point: install, pytest on two workers, ``mkdocs build --strict``), with nothing
else running on the machine, and keeps its log; ``--log FILE`` reads the log of such a run
instead. From the log: ``make test``'s seconds (install included), pytest's own seconds, the
test counts, and the slowest tests and fixtures (``--durations`` in ``pyproject.toml``).

    python -m bench.make_test_time --run              # about 15 min -> bench/results/make_test.json
    python -m bench.make_test_time --log ci.log --commit 66d0cc7 --before old.log --before-commit 1a94d25
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from bench.common import REPO, machine, write_result

RESULT = Path(__file__).parent / "results" / "make_test.json"
AIM_SECONDS = 900
SLOWEST = 15


def parse_log(text: str) -> dict:
    """The numbers of one ``.ci/run`` log; raises ValueError when the run did not finish."""
    total = re.search(r"^ci: make test took (\d+) s$", text, re.MULTILINE)
    summary = re.search(r"^=*\s*(.*?) in ([\d.]+)s(?: \([\d:]+\))?\s*=*$", text, re.MULTILINE)
    if total is None or summary is None:
        raise ValueError("the log has no 'ci: make test took' line or no pytest summary: the run did not finish")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", summary.group(1))}
    slowest = [{"seconds": float(s), "phase": phase, "test": test}
               for s, phase, test in re.findall(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)$", text, re.MULTILINE)]
    # `time`'s real/user/sys lines, when the log has them (`--run` adds them).
    times = {k: 60 * int(m) + float(sec) for k, m, sec in re.findall(r"^(real|user|sys)\s+(\d+)m([\d.]+)s$", text, re.MULTILINE)}
    cpu = times["user"] + times["sys"] if {"user", "sys"} <= set(times) else None
    return {"make_test_seconds": int(total.group(1)), "pytest_seconds": float(summary.group(2)),
            "cpu_seconds": round(cpu, 0) if cpu is not None else None,
            "cores_busy": round(cpu / times["real"], 2) if cpu is not None and times.get("real") else None,
            "counts": counts, "slowest": sorted(slowest, key=lambda x: -x["seconds"])[:SLOWEST]}


def run_fresh_clone(log: Path) -> str:
    """Clone HEAD, run ``bash .ci/run`` in it, write its output to ``log``; returns the commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="make-test-") as tmp:
        clone = Path(tmp) / "sentibridge"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        with log.open("w") as handle:  # `time` adds the CPU seconds (user, sys) to the log
            subprocess.run(["bash", "-c", "time bash .ci/run"], cwd=clone, stdout=handle, stderr=subprocess.STDOUT,
                           check=False)
    return commit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", action="store_true", help="run .ci/run on a fresh clone of HEAD")
    source.add_argument("--log", type=Path, help="the log of a finished .ci/run")
    parser.add_argument("--commit", help="with --log: the commit that log ran")
    parser.add_argument("--before", type=Path, help="the log of an earlier commit's run on this machine, side by side")
    parser.add_argument("--before-commit", help="the commit of --before")
    args = parser.parse_args()

    if args.run:
        log = Path(tempfile.gettempdir()) / "sentibridge-make-test.log"
        commit = run_fresh_clone(log)
    else:
        log, commit = args.log, args.commit
    numbers = parse_log(log.read_text(encoding="utf-8", errors="replace"))
    result = {"commit": commit, **numbers, "aim_seconds": AIM_SECONDS,
              "over_aim": round(numbers["make_test_seconds"] / AIM_SECONDS, 3), "machine": machine()}
    if args.before is not None:
        before = parse_log(args.before.read_text(encoding="utf-8", errors="replace"))
        result["before"] = {"commit": args.before_commit, **before}
        result["over_before"] = round(numbers["make_test_seconds"] / before["make_test_seconds"], 3)
        print(f"before ({args.before_commit}): {before['make_test_seconds']} s; now {result['over_before']:.2f}x that")
    print(f"make test on a fresh clone ({commit}): {numbers['make_test_seconds']} s "
          f"({result['over_aim']:.2f}x the {AIM_SECONDS} s aim); pytest {numbers['pytest_seconds']:.0f} s; {numbers['counts']}")
    print(f"{'seconds':>8}  {'phase':<8} test")
    for row in numbers["slowest"]:
        print(f"{row['seconds']:>8.1f}  {row['phase']:<8} {row['test']}")
    write_result(RESULT, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
