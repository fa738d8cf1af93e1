"""Real servers on loopback for the remote tests: a ZenML server, S3 (moto) and MLflow with basic auth.

Each server is a subprocess in its own process group on a free port of 127.0.0.1, started once
per session (all three at once: each takes up to a minute to start on 2 cores) and always
terminated. Their logs go to files that a failing test shows. The stack (local orchestrator,
S3 artifact store, MLflow tracker and registry) is registered on the ZenML server through the
ZenML client, as a user would, and picked with ``SENTIBRIDGE_STACK``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE, cli_env
from tests.loopback import Server, free_port, mlflow_server

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]
BUCKET = "sentibridge-artifacts"
STACK = "sentibridge-remote"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-tests"
#: moto accepts any key; s3fs and boto3 read these from the environment, as on a real stack.
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Remote:
    """The running servers and the environment a `sentibridge` subprocess needs to use them."""

    root: Path
    zenml: Server
    s3: Server
    mlflow: Server

    @property
    def servers(self) -> list[Server]:
        return [self.zenml, self.s3, self.mlflow]

    def env(self, home: Path, credentials: tuple[str, str] | None = (ADMIN, ADMIN_PASSWORD), **extra: str) -> dict[str, str]:
        """A `sentibridge` subprocess bound to ``home``, the ZenML server, the stack and MLflow."""
        env = {**cli_env(home, seeded=False), **AWS, **client_config(home, self)}
        env.update(SENTIBRIDGE_STACK=STACK, SENTIBRIDGE_MODEL_CACHE=str(MODEL_CACHE))
        if credentials is not None:
            env.update(MLFLOW_TRACKING_USERNAME=credentials[0], MLFLOW_TRACKING_PASSWORD=credentials[1])
        env.update(extra)
        return env


def client_config(home: Path, remote: Remote) -> dict[str, str]:
    """ZenML client settings: the server's URL, and a config folder of this home (not ~/.config)."""
    return {
        "ZENML_STORE_URL": remote.zenml.url,
        "ZENML_CONFIG_PATH": str(home / "zenml-client"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "MLFLOW_TRACKING_URI": remote.mlflow.url,
    }


#: Registers the stack through the ZenML client, in a subprocess: the test process must not
#: bind its own ZenML global config to the server.
REGISTER_STACK = """
import json, os, sys
from zenml.client import Client
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())  # a `python -c` script has no file to guess it from
from zenml.enums import StackComponentType as T
bucket, endpoint, stack, tracking_uri, username, password = sys.argv[1:7]
client = Client()
# ZenML wants credentials for a remote tracker; a secret keeps them out of the component's config.
client.create_secret(stack + "-mlflow", values={"username": username, "password": password})
client.create_stack_component(name=stack + "-s3", flavor="s3", component_type=T.ARTIFACT_STORE,
    configuration={"path": f"s3://{bucket}/zenml", "client_kwargs": {"endpoint_url": endpoint}})
client.create_stack_component(name=stack + "-tracker", flavor="mlflow", component_type=T.EXPERIMENT_TRACKER,
    configuration={"tracking_uri": tracking_uri, "tracking_username": "{{" + stack + "-mlflow.username}}",
                   "tracking_password": "{{" + stack + "-mlflow.password}}"})
client.create_stack_component(name=stack + "-registry", flavor="mlflow", component_type=T.MODEL_REGISTRY, configuration={})
client.create_stack(name=stack, components={
    T.ORCHESTRATOR: "default", T.ARTIFACT_STORE: stack + "-s3",
    T.EXPERIMENT_TRACKER: stack + "-tracker", T.MODEL_REGISTRY: stack + "-registry"})
print(json.dumps(sorted(s.name for s in client.list_stacks().items)))
"""

@pytest.fixture(scope="session")
def remote_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    zen_port, s3_port = free_port(), free_port()
    (root / "zenml").mkdir()
    (root / "s3").mkdir()
    remote = Remote(
        root=root,
        zenml=Server(
            "zenml server",
            [sys.executable, "-m", "uvicorn", "zenml.zen_server.zen_server_api:app", "--host", "127.0.0.1", "--port", str(zen_port)],
            zen_port, "/health", root / "zenml" / "server.log",
            env={"ZENML_STORE_URL": f"sqlite:///{root / 'zenml' / 'zenml.db'}", "ZENML_CONFIG_PATH": str(root / "zenml" / "config"),
                 "ZENML_SERVER_AUTH_SCHEME": "NO_AUTH", "ZENML_SERVER_AUTO_ACTIVATE": "1",
                 "ZENML_SERVER_DEPLOYMENT_TYPE": "other", "ZENML_ANALYTICS_OPT_IN": "false", **AWS},
        ),
        s3=Server("moto S3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], s3_port, "/", root / "s3" / "server.log"),
        mlflow=mlflow_server(root / "mlflow", auth=(ADMIN, ADMIN_PASSWORD)),
    )
    try:
        for server in remote.servers:
            server.start()
        for server in remote.servers:
            server.wait()
        import boto3

        boto3.client("s3", endpoint_url=remote.s3.url, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        env = {**cli_env(root / "registrar", seeded=False), **AWS, **client_config(root / "registrar", remote)}
        proc = subprocess.run(
            [sys.executable, "-c", REGISTER_STACK, BUCKET, remote.s3.url, STACK, remote.mlflow.url, ADMIN, ADMIN_PASSWORD],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0 and STACK in json.loads(proc.stdout.splitlines()[-1]), proc.stderr[-3000:]
        yield remote
    finally:
        for server in remote.servers:
            server.stop()


@pytest.fixture
def remote(remote_session: Remote) -> Remote:
    """The servers, with MLflow started again (same database) if a test stopped it."""
    if not remote_session.mlflow.running():
        remote_session.mlflow.start()
        remote_session.mlflow.wait()
    return remote_session


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS["AWS_DEFAULT_REGION"]}


def bucket_keys(remote: Remote, prefix: str = "") -> list[str]:
    """Every object key in the test bucket under ``prefix``."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=remote.s3.url, **_boto_credentials())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing remote test shows the end of each server's log."""
    outcome = yield
    report = outcome.get_result()
    remote = item.funcargs.get("remote_session") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(remote, Remote):
        for server in remote.servers:
            report.sections.append((f"{server.name} log ({server.log})", server.tail()))
