"""A tracking server that cannot answer is an error, never "no champion".

Real sockets on loopback: a closed port, and tiny HTTP servers that answer 500 or 401 to
everything. MLflow's own client makes the requests (with its retries turned down to keep
the tests fast).
"""

from __future__ import annotations

import http.server
import socket
import threading

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from sentibridge.errors import SentibridgeError, describe
from sentibridge.registry import promotion as registry


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")


def _closed_port_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _answering(status: int):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"not json")

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    """Factory: the URI of a loopback HTTP server that answers ``status`` to every request."""
    started = []

    def make(status: int) -> str:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _answering(status))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield make
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


CALLS = {
    "alias_version": lambda client: registry.alias_version(client, "m", registry.CHAMPION),
    "list_versions": lambda client: registry.list_versions(client, "m"),
    "require_version": lambda client: registry.require_version(client, "m", "1"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_refused_connection_is_raised_and_described_as_unreachable(call, monkeypatch):
    uri = _closed_port_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(MlflowException) as caught:
        call(mlflow.MlflowClient(tracking_uri=uri))
    failure = describe(caught.value)
    assert failure.exit_code == 1
    assert f"MLflow tracking server {uri} is unreachable: Connection refused" in failure.message
    assert "\n" not in failure.message


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_server_answering_500_is_raised_and_named(call, server, monkeypatch):
    uri = server(500)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(MlflowException) as caught:
        call(mlflow.MlflowClient(tracking_uri=uri))
    message = describe(caught.value).message
    assert message.startswith(f"MLflow tracking server {uri} is failing") and "500" in message


def test_a_refused_login_names_the_status_and_the_variables(server, monkeypatch):
    uri = server(401)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(MlflowException) as caught:
        registry.alias_version(mlflow.MlflowClient(tracking_uri=uri), "m", registry.CHAMPION)
    message = describe(caught.value).message
    assert message == (
        f"MLflow tracking server {uri} refused the login (401 Unauthorized): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )


def test_a_missing_permission_names_the_user_and_what_was_refused(server, monkeypatch):
    """A 403 is not a wrong password: the login worked, the user lacks a permission."""
    uri = server(403)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    with pytest.raises(MlflowException) as caught:
        registry.alias_version(mlflow.MlflowClient(tracking_uri=uri), "m", registry.CHAMPION)
    message = describe(caught.value).message
    assert message.startswith(f"MLflow tracking server {uri}: user 'reader' lacks permission on the registered model (/api/")
    assert "(403 Forbidden)" in message and "PASSWORD" not in message


def test_only_a_real_not_found_means_none(tmp_path):
    """On a reachable store a missing model, alias or version is an answer: None, [] or a user error."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert registry.alias_version(client, "absent", registry.CHAMPION) is None
    assert registry.list_versions(client, "absent") == []
    client.create_registered_model("present")
    assert registry.alias_version(client, "present", registry.CHAMPION) is None
    for version in ("3", "latest"):
        with pytest.raises(SentibridgeError, match=f"has no version {version}"):
            registry.require_version(client, "present", version)


def test_other_mlflow_errors_keep_their_own_message(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/mlflow.db")
    message = describe(MlflowException("Registered Model with name=m not found")).message
    assert message == "MLflow (sqlite:////x/mlflow.db): Registered Model with name=m not found"
