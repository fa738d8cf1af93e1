"""A plain remote MLflow tracking server, as any MLflow tool uses it: ``MLFLOW_TRACKING_URI``.

Without ``SENTIBRIDGE_STACK``, sentibridge registers the MLflow tracker of its home's own stack
for that URI (``stack.ensure_stack``). ZenML's tracker insists on credentials for a remote URI;
they come from MLflow's own variables (``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``
or ``MLFLOW_TRACKING_TOKEN``) and live in one ZenML secret that the tracker's configuration only
references, so they never reach a component's config, a log line or a run's params. A server
without auth needs no variable: the secret then holds a placeholder token that such a server
ignores (and a server with auth rejects, with a 401 that names the missing login).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sentibridge.errors import ConfigError

#: The ZenML secret that holds the tracker's credentials, in the home's own ZenML store.
SECRET_NAME = "sentibridge-mlflow-credentials"
#: Sent as a bearer token when the user set no credentials: ignored by a server without auth.
NO_AUTH_TOKEN = "no-credentials-set"
#: Tracker settings this module owns; any it does not set are removed from the component.
CREDENTIAL_KEYS = ("tracking_username", "tracking_password", "tracking_token")


def credentials(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secret's values from MLflow's environment variables; one line on a half-set pair."""
    env = os.environ if env is None else env
    username = env.get("MLFLOW_TRACKING_USERNAME") or ""
    password = env.get("MLFLOW_TRACKING_PASSWORD") or ""
    token = env.get("MLFLOW_TRACKING_TOKEN") or ""
    if bool(username) != bool(password):
        missing = "MLFLOW_TRACKING_PASSWORD" if username else "MLFLOW_TRACKING_USERNAME"
        raise ConfigError(f"{missing} is not set: MLflow's basic auth needs both the username and the password")
    if username and token:
        raise ConfigError("set either MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN, not both")
    if username:
        return {"username": username, "password": password}
    return {"token": token or NO_AUTH_TOKEN}


def tracker_configuration(tracking_uri: str, values: Mapping[str, str]) -> dict[str, Any]:
    """The tracker's configuration for ``tracking_uri``: credentials as references to the secret.

    Every key of ``CREDENTIAL_KEYS`` is present; None removes it from an existing component.
    """
    configuration: dict[str, Any] = {"tracking_uri": tracking_uri, **dict.fromkeys(CREDENTIAL_KEYS)}
    for key in values:
        configuration[f"tracking_{key}"] = "{{" + f"{SECRET_NAME}.{key}" + "}}"
    return configuration


def store_credentials(client: Any, values: Mapping[str, str]) -> None:
    """Create or replace the credentials secret in ``client``'s ZenML store (idempotent)."""
    try:
        existing = client.get_secret(SECRET_NAME, allow_partial_name_match=False, allow_partial_id_match=False)
    except KeyError:
        client.create_secret(SECRET_NAME, values=dict(values))
        return
    current = existing.secret_values
    if current == dict(values):
        return
    client.update_secret(
        SECRET_NAME,
        add_or_update_values=dict(values),
        remove_values=[key for key in current if key not in values] or None,
    )
