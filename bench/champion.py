"""A project home whose champion is the real Gemma-3-270M, for the serving benchmarks
(``bench.spark_predict``, ``bench.serve_load``).

Serving cost does not depend on how long the model was trained, so the champion is the default
config's 3-step smoke run, promoted by hand (the gate rightly keeps a 3-step model a challenger).
The home is reused when it already has a champion.
"""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from bench.common import REPO, cli_command, cli_env, run_cli

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
