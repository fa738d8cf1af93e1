"""The project home: one folder for all local state, and the environment that points at it.

``SENTIBRIDGE_HOME`` (default ``.sentibridge/`` in the working directory) holds the ZenML
config and store, the MLflow tracking DB and artifacts, and cached models (or
``SENTIBRIDGE_MODEL_CACHE``, to share converted models between homes) and sentence vectors
(or ``SENTIBRIDGE_EMBEDDING_CACHE``). A user's own
``MLFLOW_TRACKING_URI``, ``ZENML_CONFIG_PATH`` or ZenML server (``ZENML_STORE_URL``) wins.

``activate`` must run before zenml is imported: ZenML reads its config path at import. It
re-points a copied home first (``relocation``); ``stack.ensure_stack`` registers the ZenML stack
that uses the home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sentibridge.relocation import repoint_mlflow, repoint_zenml
from sentibridge.zenml_speed import memoise_package_lookup


@dataclass(frozen=True)
class Home:
    """Resolved locations under the project home."""

    root: Path
    tracking_uri: str

    @property
    def zenml_config(self) -> Path:
        return self.root / "zenml"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def local_tracking_uri(self) -> str:
        """MLflow on SQLite inside the home: the default when MLFLOW_TRACKING_URI is unset."""
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def models(self) -> Path:
        """Cached base models (e.g. the converted embedded Gemma).

        ``SENTIBRIDGE_MODEL_CACHE`` shares one cache between homes (tests, benchmarks).
        """
        return _shared("SENTIBRIDGE_MODEL_CACHE") or self.root / "models"

    @property
    def embedded_model(self) -> Path:
        """The embedded Gemma-3-270M, converted once to safetensors."""
        return self.models / "gemma-3-270m"

    @property
    def embeddings(self) -> Path:
        """Sentence vectors cached by content hash (``embedding.EmbeddingCache``).

        ``SENTIBRIDGE_EMBEDDING_CACHE`` shares one cache between homes (experiments on the same
        data, tests): a vector is keyed by its embedder and text, so any home may reuse it.
        """
        return _shared("SENTIBRIDGE_EMBEDDING_CACHE") or self.root / "embeddings"

    @property
    def runs(self) -> Path:
        """Scratch space of training runs (checkpoints)."""
        return self.root / "runs"


def _shared(variable: str) -> Path | None:
    """The folder an environment variable names for a cache shared between homes; None when unset."""
    value = os.environ.get(variable)
    return Path(value).expanduser().resolve() if value else None


def resolve_home() -> Home:
    """Read ``SENTIBRIDGE_HOME`` and ``MLFLOW_TRACKING_URI`` without changing anything."""
    root = Path(os.environ.get("SENTIBRIDGE_HOME", ".sentibridge")).expanduser().resolve()
    local = Home(root=root, tracking_uri="")
    return Home(root=root, tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or local.local_tracking_uri)


def activate() -> Home:
    """Create the home and point ZenML, MLflow and GE at it (user settings win).

    A home that was copied or moved still records its old location in ZenML's config and in
    both SQLite stores; those are re-pointed here first, so a copy never writes into the original.
    """
    home = resolve_home()
    for folder in (home.root, home.mlflow_dir, home.models, home.runs):
        folder.mkdir(parents=True, exist_ok=True)
    env = os.environ
    # On a dead network each analytics call can block for seconds.
    env["ZENML_ANALYTICS_OPT_IN"] = "false"
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
    # MLflow's own retries, shorter than its defaults (7 retries, backoff 2, 120 s): a tracking
    # server that is down fails a command in seconds, not minutes. Users may set their own.
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    env.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    env.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if "ZENML_STORE_URL" not in env and env.get("ZENML_CONFIG_PATH", str(home.zenml_config)) == str(home.zenml_config):
        repoint_zenml(home)
        env["ZENML_CONFIG_PATH"] = str(home.zenml_config)
    if home.tracking_uri == home.local_tracking_uri:
        repoint_mlflow(home)
    env["MLFLOW_TRACKING_URI"] = home.tracking_uri
    memoise_package_lookup()
    return home
