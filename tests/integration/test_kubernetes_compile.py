"""Kubernetes readiness, proven by compiling: the pipeline with `configs/stacks/kubernetes.yaml`
against a registered Kubernetes stack (no cluster). The GPU step operator and its resources land
on train and evaluate only, the schedule becomes a CronJob manifest, and a stack with a local
artifact store is refused by `stack.validate()`.

ZenML runs in a subprocess with its own `ZENML_CONFIG_PATH` (a fresh store in tmp) and a
throwaway kubeconfig, so nothing of the user's ZenML or Kubernetes setup is read or changed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.integration

RUN_CONFIG = REPO / "configs" / "stacks" / "kubernetes.yaml"

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: ci
  user: {token: not-a-token}
contexts:
- name: sentibridge-test
  context: {cluster: nowhere, user: ci, namespace: sentibridge}
current-context: sentibridge-test
"""

_COMPILE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import yaml
    from kubernetes.client import ApiClient
    from zenml.client import Client
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.enums import StackComponentType as T
    from zenml.exceptions import StackValidationError
    from zenml.integrations.kubernetes.manifest_utils import build_cron_job_manifest, job_template_manifest_from_job
    from zenml.stack import Stack

    from pipelines import run
    from pipelines.sentibridge_pipeline import sentibridge_pipeline
    from sentibridge.config import Settings

    run_config = Path(sys.argv[1])
    client = Client()
    k8s = {"kubernetes_context": "sentibridge-test", "kubernetes_namespace": "sentibridge"}
    client.create_stack_component("k8s", "kubernetes", T.ORCHESTRATOR, {**k8s, "skip_local_validations": True})
    client.create_stack_component("k8s-strict", "kubernetes", T.ORCHESTRATOR, k8s)
    client.create_stack_component("gpu", "kubernetes", T.STEP_OPERATOR, k8s)
    client.create_stack_component("registry", "default", T.CONTAINER_REGISTRY, {"uri": "registry.example.com/sentibridge"})
    client.create_stack_component("builder", "local", T.IMAGE_BUILDER, {})
    client.create_stack_component("mlflow", "mlflow", T.EXPERIMENT_TRACKER,
                                  {"tracking_uri": "https://mlflow.example.com", "tracking_token": "not-a-token"})
    common = {T.ARTIFACT_STORE: "default", T.CONTAINER_REGISTRY: "registry", T.IMAGE_BUILDER: "builder",
              T.EXPERIMENT_TRACKER: "mlflow", T.STEP_OPERATOR: "gpu"}
    client.create_stack("k8s", components={**common, T.ORCHESTRATOR: "k8s"})
    client.create_stack("k8s-strict", components={**common, T.ORCHESTRATOR: "k8s-strict"})
    client.activate_stack("k8s")
    stack = client.active_stack

    # What `sentibridge train --run-config FILE` hands to ZenML.
    options = run.pipeline_options(Settings(), data_only=False, run_name="k8s-compile", run_config=run_config)
    pipeline = sentibridge_pipeline.with_options(**options)
    pipeline.prepare(settings=Settings(), data_version={"data_version": "abc.dir"}, data_only=False)
    plan = PipelineRunConfiguration.model_validate(yaml.safe_load(run_config.read_text()))
    snapshot = Compiler().compile(pipeline=pipeline, stack=stack, run_configuration=plan)

    steps = {}
    for name, step in snapshot.step_configurations.items():
        resources = step.config.settings.get("resources")
        steps[name] = {
            "step_operator": step.config.step_operator,
            "resources": resources.model_dump(exclude_none=True) if resources is not None else None,
            "docker": step.config.settings["docker"].model_dump(include={"local_project_install_command", "apt_packages"}),
        }

    # The orchestrator's own manifest builders, as `submit_pipeline` calls them for a schedule.
    orchestrator = stack.orchestrator
    settings = orchestrator.get_settings(snapshot)
    job = orchestrator._prepare_job_manifest(
        name="sentibridge-k8s-compile", command=["python"], args=["-m", "zenml.entrypoints"],
        image="registry.example.com/sentibridge:compiled", environment={}, labels={"pipeline": "sentibridge"},
        annotations={}, settings=settings, pod_settings=settings.orchestrator_pod_settings,
    )
    cron = build_cron_job_manifest(
        job_template=job_template_manifest_from_job(job), cron_expression=plan.schedule.cron_expression,
        concurrency_policy=settings.concurrency_policy,
    )

    try:
        Stack.from_model(client.get_stack("k8s-strict")).validate()
        refused = None
    except StackValidationError as exc:
        refused = str(exc)
    print(json.dumps({"steps": steps, "cron_job": ApiClient().sanitize_for_serialization(cron), "refused": refused}))
    """
)


def test_the_pipeline_compiles_for_kubernetes_with_gpu_steps_and_a_cron_job(tmp_path):
    pytest.importorskip("kubernetes", reason="the `kubernetes` extra is not installed")
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    script = tmp_path / "compile.py"
    script.write_text(_COMPILE)
    env = {**cli_env(tmp_path / "home"), "ZENML_CONFIG_PATH": str(tmp_path / "zenml"),
           "KUBECONFIG": str(tmp_path / "kubeconfig"), "ZENML_LOGGING_VERBOSITY": "ERROR"}
    proc = subprocess.run([sys.executable, str(script), str(RUN_CONFIG)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    steps = result["steps"]
    assert {"ingest", "split", "augment", "train", "evaluate", "register", "gate"} <= set(steps)
    gpu = {"cpu_count": 8, "gpu_count": 1, "memory": "32GB"}
    for name, step in steps.items():
        if name in ("train", "evaluate"):
            assert step["step_operator"] == "gpu" and step["resources"] == gpu, (name, step)
        else:
            assert not step["step_operator"] and step["resources"] is None, (name, step)
        assert step["docker"] == {"local_project_install_command": "pip install --no-cache-dir .", "apt_packages": ["git"]}

    cron_job = result["cron_job"]
    assert cron_job["kind"] == "CronJob" and cron_job["apiVersion"] == "batch/v1"
    assert cron_job["spec"]["schedule"] == "0 3 * * 1"
    pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/sentibridge:compiled"
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}
    assert pod["serviceAccountName"] == "sentibridge-pipelines"

    refused = result["refused"]
    assert refused is not None, "a Kubernetes stack with a local artifact store passed validation"
    assert "'default' artifact_store is a local stack component" in refused
    assert "skip_local_validations" in refused
