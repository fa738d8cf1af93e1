"""Credentials of a plain remote MLFLOW_TRACKING_URI and the tracker configuration that references them."""

from __future__ import annotations

import pytest

from sentibridge import tracking_server
from sentibridge.errors import ConfigError


def test_basic_auth_pair_goes_to_the_secret_and_the_tracker_only_references_it():
    values = tracking_server.credentials({"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "s3cret"})
    assert values == {"username": "ana", "password": "s3cret"}
    config = tracking_server.tracker_configuration("http://mlflow:5000", values)
    assert config["tracking_uri"] == "http://mlflow:5000"
    assert config["tracking_username"] == "{{" + tracking_server.SECRET_NAME + ".username}}"
    assert config["tracking_password"] == "{{" + tracking_server.SECRET_NAME + ".password}}"
    assert config["tracking_token"] is None  # removed from a tracker that had a token before
    assert "s3cret" not in repr(config)


def test_a_token_or_nothing_is_a_token():
    assert tracking_server.credentials({"MLFLOW_TRACKING_TOKEN": "tok"}) == {"token": "tok"}
    # A server without auth needs nothing from the user; ZenML still wants one credential.
    assert tracking_server.credentials({}) == {"token": tracking_server.NO_AUTH_TOKEN}
    config = tracking_server.tracker_configuration("https://m", {"token": "tok"})
    assert config["tracking_username"] is None and config["tracking_password"] is None
    assert config["tracking_token"] == "{{" + tracking_server.SECRET_NAME + ".token}}"


@pytest.mark.parametrize(
    "env, named",
    [
        ({"MLFLOW_TRACKING_USERNAME": "ana"}, "MLFLOW_TRACKING_PASSWORD"),
        ({"MLFLOW_TRACKING_PASSWORD": "x"}, "MLFLOW_TRACKING_USERNAME"),
        ({"MLFLOW_TRACKING_USERNAME": "a", "MLFLOW_TRACKING_PASSWORD": "b", "MLFLOW_TRACKING_TOKEN": "t"}, "not both"),
    ],
)
def test_half_set_or_conflicting_credentials_are_one_line(env, named):
    with pytest.raises(ConfigError, match=named):
        tracking_server.credentials(env)
