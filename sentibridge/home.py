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
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sentibridge.zenml_speed import memoise_package_lookup

STACK_NAME = "sentibridge"
TRACKER_NAME = "sentibridge-mlflow-tracker"
REGISTRY_NAME = "sentibridge-mlflow-registry"

_log = logging.getLogger(__name__)


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


# --- a copied or moved home ---------------------------------------------------------------

#: Where ZenML keeps its SQLite store, relative to its config folder (``<home>/zenml``).
ZENML_DB = Path("local_stores") / "default_zen_store" / "zenml.db"


def recorded_home(zenml_config: dict) -> Path | None:
    """The home a ZenML ``config.yaml`` was written in, from its SQLite store URL.

    None when the store is not a SQLite file in the home layout (a server, a user's own file).
    """
    url = str((zenml_config.get("store") or {}).get("url") or "")
    if not url.startswith("sqlite:///"):
        return None
    database = Path(url.removeprefix("sqlite:///"))
    if database.parts[-len(ZENML_DB.parts):] != ZENML_DB.parts or database.parents[2].name != "zenml":
        return None
    return database.parents[3]


def repoint_tree(node, old: Path, new: Path):
    """``node`` (nested dicts, lists, strings) with every path or URL under ``old`` moved under ``new``."""
    if isinstance(node, dict):
        return {k: repoint_tree(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [repoint_tree(v, old, new) for v in node]
    if isinstance(node, str):
        for before, after in _prefixes(old, new):
            if node.startswith(before):
                return after + node[len(before):]
    return node


def _prefixes(old: Path, new: Path) -> list[tuple[str, str]]:
    # Longest first: "sqlite:////a/b/" must not be caught by a shorter form.
    pairs = [(f"sqlite:///{old}/", f"sqlite:///{new}/"), (old.as_uri() + "/", new.as_uri() + "/"), (f"{old}/", f"{new}/")]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def repoint_zenml(home: Home) -> Path | None:
    """Re-point a copied home's ZenML config and store to ``home``; return the old home, if any.

    Runs before ZenML is imported: ZenML would otherwise open the store the config names,
    i.e. the original home's database.
    """
    import yaml

    config_file = home.zenml_config / "config.yaml"
    if not config_file.is_file():
        return None
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    old = recorded_home(config) if isinstance(config, dict) else None
    if old is None or old == home.root:
        return None
    database = home.zenml_config / ZENML_DB
    if database.is_file():
        # Artifact, visualization and log URIs: without this a cached step of the copy would
        # hand back artifacts that live (or lived) in the original home.
        repoint_sqlite(database, old, home.root)
    # The config last: should the database fail, the next run finds the old home again.
    config["store"] = repoint_tree(config["store"], old, home.root)
    staged = config_file.with_suffix(".yaml.tmp")
    staged.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    staged.replace(config_file)
    _log.warning("this home was copied or moved from %s: its ZenML store now points at %s", old, home.root)
    return old


def mlflow_recorded_home(database: Path) -> Path | None:
    """The home an MLflow SQLite DB was written in, from its experiments' artifact locations.

    ``ensure_experiment`` puts artifacts at ``<home>/mlflow/artifacts``; other locations
    (a user's own artifact root) say nothing about the home.
    """
    from urllib.parse import unquote, urlparse

    with contextlib.closing(sqlite3.connect(database)) as db:
        try:
            locations = [row[0] for row in db.execute("SELECT artifact_location FROM experiments")]
        except sqlite3.DatabaseError:  # not (yet) an MLflow DB
            return None
    for location in locations:
        if not location or not location.startswith("file://"):
            continue
        path = Path(unquote(urlparse(location).path))
        if path.parts[-2:] == ("mlflow", "artifacts"):
            return path.parents[1]
    return None


def repoint_mlflow(home: Home) -> Path | None:
    """Re-point a copied home's MLflow DB (experiment, run and model locations) to ``home``."""
    from sentibridge.errors import SentibridgeError

    database = home.mlflow_dir / "mlflow.db"
    if not database.is_file():
        return None
    old = mlflow_recorded_home(database)
    if old is None or old == home.root:
        return None
    try:
        repoint_sqlite(database, old, home.root)
    except sqlite3.Error as exc:
        raise SentibridgeError(
            f"{database}: this home was copied from {old} and its MLflow DB cannot be re-pointed ({exc}); "
            f"its runs would write into {old}"
        ) from None
    _log.warning("this home was copied or moved from %s: its MLflow DB now points at %s", old, home.root)
    return old


def repoint_sqlite(database: Path, old: Path, new: Path) -> int:
    """Move every text value under ``old`` (path, file URI or SQLite URL) under ``new``; rows changed.

    One transaction over all text columns of all tables: the stores record absolute paths in
    several places (ZenML: artifact, visualization and log URIs; MLflow: experiment, run and
    model locations), and a partial rewrite would leave a home half in the original.
    """
    changed = 0
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")') if _is_text(row[2])]
            for column, (before, after) in ((c, p) for c in columns for p in _prefixes(old, new)):
                changed += db.execute(
                    f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                    f'WHERE typeof("{column}") = \'text\' AND substr("{column}", 1, ?) = ?',
                    (after, len(before) + 1, len(before), before),
                ).rowcount
    return changed


def _is_text(declared: str) -> bool:
    declared = declared.upper()
    return not declared or any(kind in declared for kind in ("CHAR", "TEXT", "CLOB"))


#: Top-level packages of this project: their warnings show even inside ``quiet()``.
OWN_PACKAGES = frozenset({"sentibridge", "steps", "pipelines", "materializers", "__main__"})


class _ConsoleFilter(logging.Filter):
    """Console records inside ``quiet()``: ours from WARNING, other libraries' from ERROR, ZenML's none."""

    def filter(self, record: logging.LogRecord) -> bool:
        package = record.name.split(".", 1)[0]
        if package == "zenml":  # banners, and step failures that the caller re-raises as one line
            return False
        return record.levelno >= (logging.WARNING if package in OWN_PACKAGES else logging.ERROR)


@contextlib.contextmanager
def quiet():
    """Quiet the console for a block that runs ZenML: its banners and re-raised step tracebacks.

    Only what reaches the console is filtered (ZenML's stored step logs keep everything), and
    warnings and errors of sentibridge's own loggers still show. ZenML's console handler writes
    to the original stdout, past ``redirect_stdout``, so a handler filter is what silences it.
    """
    console = [h for h in logging.root.handlers if isinstance(h, logging.StreamHandler)]
    only = _ConsoleFilter()
    for handler in console:
        handler.addFilter(only)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for handler in console:
            handler.removeFilter(only)


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
    from zenml.utils import source_utils
    from zenml.utils.pagination_utils import depaginate

    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import is_remote_mlflow_tracking_uri

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


def moved_store_path(path: str, home: Home) -> str | None:
    """Where a local artifact store's explicit ``path`` belongs after the home was copied.

    ZenML's default store has no path (it follows ``ZENML_CONFIG_PATH``); one set inside another
    home's ``zenml/local_stores`` is moved to the same place in this home. None: leave it.
    """
    parts = Path(path).parts
    for i in range(len(parts) - 1):
        if parts[i : i + 2] == ("zenml", "local_stores"):
            if Path(*parts[:i]) == home.root:
                return None
            return str(home.root.joinpath(*parts[i:]))
    return None


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
