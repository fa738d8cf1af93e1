"""One side of a promotion race, run as a process: ``python -m tests.promotion_racer``.

It decides against "no champion", waits at a file barrier until the other racer has decided
too, then applies its decision under the promotion lock; prints a JSON line with the outcome.

    MLFLOW_TRACKING_URI=... python -m tests.promotion_racer NAME VERSION BARRIER (--lock-dir DIR | --lock-url URL)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sentibridge.config import GateConfig
from sentibridge.config_loading import load_settings
from sentibridge.home import resolve_home
from sentibridge.registry import promotion as registry
from sentibridge.registry.gate import decide
from sentibridge.registry.lock import PromotionLock
from sentibridge.registry.registration import f1_from_tags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("version")
    parser.add_argument("barrier", type=Path)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--lock-dir", type=Path, help="the local file lock's folder")
    where.add_argument("--lock-url", help="registry.lock_url: a database lock")
    args = parser.parse_args()
    name, version = args.name, args.version
    if args.lock_url:
        settings = load_settings(overrides=[f"registry.lock_url={args.lock_url}", "registry.lock_timeout_s=60"])
        lock = PromotionLock.of(settings.registry, resolve_home().root)
    else:
        lock = PromotionLock(args.lock_dir, 60)
    client = registry.client()  # MLFLOW_TRACKING_URI: the store both racers share
    mine = f1_from_tags(client.get_model_version(name, version).tags)
    assert registry.alias_version(client, name, "champion") is None
    decision = decide(mine, {"en": 0.5, "hi": 0.4}, GateConfig(), "base_zero_shot", version, None)
    # Both processes have now decided against "no champion"; only then may either write.
    (args.barrier / version).touch()
    while len(list(args.barrier.iterdir())) < 2:
        time.sleep(0.02)

    def redecide(current: str):
        theirs = f1_from_tags(client.get_model_version(name, current).tags)
        return decide(mine, theirs, GateConfig(), "champion", version, current)

    final = registry.apply_decision(client, name, version, decision, lock, redecide)
    print(json.dumps({"version": version, "promoted": final.promote, "reasons": final.reasons,
                      "home": str(resolve_home().root)}))


if __name__ == "__main__":
    main()
