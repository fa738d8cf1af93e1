"""The project home: one folder for all local state, and the ZenML stack that uses it.

``SENTIBRIDGE_HOME`` (default ``.sentibridge/`` in the working directory) holds the ZenML
config and store, the MLflow tracking DB and artifacts, and cached models (or
``SENTIBRIDGE_MODEL_CACHE``, to share converted models between homes). A user's own
``MLFLOW_TRACKING_URI``, ``ZENML_CONFIG_PATH`` or ZenML server (``ZENML_STORE_URL``) wins.

``activate`` must run before zenml is imported: ZenML reads its config path at import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

STACK_NAME = "sentibridge"
TRACKER_NAME = "sentibridge-mlflow-tracker"
REGISTRY_NAME = "sentibridge-mlflow-registry"


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
        shared = os.environ.get("SENTIBRIDGE_MODEL_CACHE")
        return Path(shared).expanduser().resolve() if shared else self.root / "models"

    @property
    def embedded_model(self) -> Path:
        """The embedded Gemma-3-270M, converted once to safetensors."""
        return self.models / "gemma-3-270m"

    @property
    def embeddings(self) -> Path:
        """Sentence vectors cached by content hash (``embedding.EmbeddingCache``)."""
        return self.root / "embeddings"

    @property
    def runs(self) -> Path:
        """Scratch space of training runs (checkpoints)."""
        return self.root / "runs"


def resolve_home() -> Home:
    """Read ``SENTIBRIDGE_HOME`` and ``MLFLOW_TRACKING_URI`` without changing anything."""
    root = Path(os.environ.get("SENTIBRIDGE_HOME", ".sentibridge")).expanduser().resolve()
    local = Home(root=root, tracking_uri="")
    return Home(root=root, tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or local.local_tracking_uri)


def activate() -> Home:
    """Create the home and point ZenML, MLflow and GE at it (user settings win)."""
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
    if "ZENML_STORE_URL" not in env:
        env.setdefault("ZENML_CONFIG_PATH", str(home.zenml_config))
    env["MLFLOW_TRACKING_URI"] = home.tracking_uri
    return home


@contextlib.contextmanager
def quiet():
    """Silence ZenML's chatter for a block: banners, and step-failure tracebacks we re-raise ourselves."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        logging.disable(previous)


def ensure_stack(home: Home) -> str:
    """Register (once) and activate a stack with the MLflow tracker and model registry.

    Idempotent. With ``SENTIBRIDGE_STACK`` set, that stack is used as it is (production:
    Kubernetes/Kubeflow/Airflow stacks with a remote MLflow), and nothing is registered.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.utils import source_utils

    # Steps and pipelines are importable packages next to sentibridge/; without this ZenML
    # guesses the root from __main__, which for a console script is the venv's bin/.
    source_utils.set_custom_source_root(str(Path(__file__).resolve().parents[1]))
    client = Client()
    wanted = os.environ.get("SENTIBRIDGE_STACK")
    with quiet():
        if wanted:
            if client.active_stack_model.name != wanted:
                client.activate_stack(wanted)
            return wanted
        _register_component(client, TRACKER_NAME, StackComponentType.EXPERIMENT_TRACKER, home.tracking_uri)
        _register_component(client, REGISTRY_NAME, StackComponentType.MODEL_REGISTRY, None)
        if not client.list_stacks(name=STACK_NAME).items:
            default = client.get_stack("default")
            client.create_stack(
                name=STACK_NAME,
                components={
                    StackComponentType.ORCHESTRATOR: default.components[StackComponentType.ORCHESTRATOR][0].name,
                    StackComponentType.ARTIFACT_STORE: default.components[StackComponentType.ARTIFACT_STORE][0].name,
                    StackComponentType.EXPERIMENT_TRACKER: TRACKER_NAME,
                    StackComponentType.MODEL_REGISTRY: REGISTRY_NAME,
                },
            )
        if client.active_stack_model.name != STACK_NAME:
            client.activate_stack(STACK_NAME)
    return STACK_NAME


def ensure_experiment(home: Home, name: str) -> None:
    """Create the MLflow experiment with its artifacts under the home (local stores only).

    MLflow on SQLite would otherwise put artifacts in ``./mlruns`` of whatever folder the
    command ran in. A remote or user-chosen tracking server keeps its own artifact root.
    """
    if home.tracking_uri != home.local_tracking_uri:
        return
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=home.tracking_uri)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=(home.mlflow_dir / "artifacts").as_uri())


def _register_component(client, name: str, kind, tracking_uri: str | None) -> None:
    existing = client.list_stack_components(name=name, type=kind).items
    if existing:
        # The user may have moved MLFLOW_TRACKING_URI since the stack was registered.
        if tracking_uri and existing[0].configuration.get("tracking_uri") != tracking_uri:
            client.update_stack_component(name, kind, configuration={"tracking_uri": tracking_uri})
        return
    configuration = {"tracking_uri": tracking_uri} if tracking_uri else {}
    client.create_stack_component(name=name, flavor="mlflow", component_type=kind, configuration=configuration)
