"""A project home whose champion is the real Gemma-3-270M, for the serving benchmarks
(``spark_predict.py``, ``serve_load.py``).

Serving cost does not depend on how long the model was trained, so the champion is the default
config's 3-step smoke run, promoted by hand (the gate rightly keeps a 3-step model a challenger).
The home is reused when it already has a champion.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from umsab import REPO, cli_command, run_cli

DEFAULT_HOME = Path("/tmp/sentibridge-bench/serving-champion")
MODEL_NAME = "sentibridge-sentiment"


def champion_version(home: Path) -> str | None:
    """The version the ``champion`` alias points at in ``home``'s MLflow database, or None."""
    db = home / "mlflow" / "mlflow.db"
    if not db.is_file():
        return None
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
                           (MODEL_NAME,)).fetchone()
    return str(row[0]) if row else None


def champion_home(home: Path = DEFAULT_HOME) -> tuple[Path, str]:
    """``home`` with a Gemma-3-270M champion (trained and promoted here if it has none); (home, version)."""
    version = champion_version(home)
    if version is not None:
        return home, version
    code, result, _ = run_cli(REPO / "configs" / "default.yaml", ["train.max_steps=3"], home)
    if code != 0 or result is None:
        raise SystemExit(f"training the bench champion failed (exit {code}); SENTIBRIDGE_HOME={home}")
    version = str(result["model_version"])
    if not result.get("promoted"):
        subprocess.run([*cli_command(), "promote", version, "--reason", "bench: serving cost does not depend on training"],
                       cwd=REPO, env=cli_env(home), check=True, capture_output=True, text=True)
    return home, version


def tracking_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a ``sentibridge`` command in ``home``, as ``umsab.run_cli`` sets it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_"))}
    env.pop("SENTIBRIDGE_STACK", None)
    env.update(ZENML_ANALYTICS_OPT_IN="false", HF_HUB_OFFLINE="1")
    env.setdefault("SENTIBRIDGE_MODEL_CACHE", str(REPO / ".sentibridge" / "models"))
    env["SENTIBRIDGE_HOME"] = str(home)
    return env
