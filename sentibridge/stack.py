"""The ZenML stack and MLflow experiment a pipeline runs on, registered in the home on first use.

Without ``SENTIBRIDGE_STACK`` a pipeline needs no setup: ``ensure_stack`` registers (once) a
stack of ZenML's default orchestrator and artifact store with an MLflow experiment tracker and
model registry for ``MLFLOW_TRACKING_URI``, and brings them up to date when that URI, its
credentials (``tracking_server``) or the home's location (``relocation``) changed since.
``ensure_experiment`` creates the MLflow experiment with its artifacts in the home. ZenML is
imported inside the functions: ``home.activate`` must run first.
"""

from __future__ import annotations

import os
from pathlib import Path

from sentibridge.console import quiet
from sentibridge.home import Home
from sentibridge.relocation import moved_store_path

STACK_NAME = "sentibridge"
TRACKER_NAME = "sentibridge-mlflow-tracker"
REGISTRY_NAME = "sentibridge-mlflow-registry"


def ensure_stack(home: Home) -> str:
    """Register (once) and activate a stack with the MLflow tracker and model registry.

    Idempotent. With ``SENTIBRIDGE_STACK`` set, that stack is used as it is (production:
    Kubernetes/Kubeflow/Airflow stacks with a remote MLflow), and nothing is registered.
    Otherwise a remote http(s) ``MLFLOW_TRACKING_URI`` gets this home's tracker, its
    credentials in a ZenML secret (``tracking_server``); a change of either updates both.
    The tracker and local artifact stores are re-pointed to this home when it was copied.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import (
        is_remote_mlflow_tracking_uri,
    )
    from zenml.utils import source_utils
    from zenml.utils.pagination_utils import depaginate

    from sentibridge import tracking_server
    from sentibridge.errors import ConfigError

    if not os.environ.get("SENTIBRIDGE_STACK") and home.tracking_uri == "databricks":
        # Databricks needs its host and OAuth settings on the tracker: a stack the team registers.
        raise ConfigError(
            "MLFLOW_TRACKING_URI=databricks needs a ZenML stack whose MLflow tracker has databricks_host and "
            "credentials; register one and set SENTIBRIDGE_STACK (docs: Run it on your infrastructure)"
        )
    # Steps and pipelines are importable packages next to sentibridge/; without this ZenML
    # guesses the root from __main__, which for a console script is the venv's bin/.
    source_utils.set_custom_source_root(str(Path(__file__).resolve().parents[1]))
    client = Client()
    wanted = os.environ.get("SENTIBRIDGE_STACK")
    with quiet():
        if wanted:
            names = sorted(stack.name for stack in depaginate(client.list_stacks))
            if wanted not in names:
                raise ConfigError(f"SENTIBRIDGE_STACK={wanted!r} is not a ZenML stack; stacks: {', '.join(names)}")
            if client.active_stack_model.name != wanted:
                client.activate_stack(wanted)
            return wanted
        if is_remote_mlflow_tracking_uri(home.tracking_uri):
            # A plain MLFLOW_TRACKING_URI, as with any MLflow tool: credentials go to a secret.
            values = tracking_server.credentials()
            tracking_server.store_credentials(client, values)
            tracker = tracking_server.tracker_configuration(home.tracking_uri, values)
        else:
            tracker = tracking_server.tracker_configuration(home.tracking_uri, {})  # no credential keys left
        _register_component(client, TRACKER_NAME, StackComponentType.EXPERIMENT_TRACKER, tracker)
        _register_component(client, REGISTRY_NAME, StackComponentType.MODEL_REGISTRY, {})
        for store in depaginate(client.list_stack_components, type=StackComponentType.ARTIFACT_STORE, flavor="local"):
            moved = moved_store_path(store.configuration.get("path") or "", home)
            if moved:
                client.update_stack_component(str(store.id), StackComponentType.ARTIFACT_STORE, configuration={"path": moved})
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
    """Create the MLflow experiment, with its artifacts under the home on the local store.

    MLflow on SQLite would otherwise put artifacts in ``./mlruns`` of whatever folder the
    command ran in. A remote or user-chosen tracking server keeps its own artifact root. This
    is also a pipeline's first request to a tracking server: one that is down, failing or
    refusing the login stops the run here, before any step.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=home.tracking_uri)
    if client.get_experiment_by_name(name) is not None:
        return
    local = home.tracking_uri == home.local_tracking_uri
    client.create_experiment(name, artifact_location=(home.mlflow_dir / "artifacts").as_uri() if local else None)


def _register_component(client, name: str, kind, configuration: dict) -> None:
    """Create the component, or bring an existing one to ``configuration`` (None removes a key)."""
    existing = client.list_stack_components(name=name, type=kind).items
    if existing:
        # The user may have moved MLFLOW_TRACKING_URI or changed credentials since registering.
        current = existing[0].configuration
        if any(current.get(key) != value for key, value in configuration.items()):
            client.update_stack_component(name, kind, configuration=configuration)
        return
    wanted = {key: value for key, value in configuration.items() if value is not None}
    client.create_stack_component(name=name, flavor="mlflow", component_type=kind, configuration=wanted)
