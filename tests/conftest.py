"""Shared fixtures: an isolated project home per test, and the UMSAB path (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: One converted Gemma for all tests and `make run` (converting takes about a minute).
MODEL_CACHE = Path(os.environ.get("SENTIBRIDGE_MODEL_CACHE", REPO / ".sentibridge" / "models")).resolve()
#: One sentence-vector cache for all test homes: the sample's texts are embedded once per machine,
#: not once per home (multilingual-e5 takes ~28 s for them on one core).
EMBEDDING_CACHE = Path(os.environ.get("SENTIBRIDGE_EMBEDDING_CACHE", REPO / ".sentibridge" / "embeddings")).resolve()
UMSAB = (REPO.parent / "shared" / "data" / "umsab").resolve()
SAMPLE = REPO / "data" / "sample"
# What `sentibridge` sets (stack.ensure_stack); ZenML otherwise guesses it from ``__main__``, which a
# pytest-xdist worker does not have as a file.
os.environ.setdefault("ZENML_CUSTOM_SOURCE_ROOT", str(REPO))
# Under pytest-xdist, each worker (and the `sentibridge` processes it starts) gets its share of
# the cores: two workers each training with all cores oversubscribe them, and the make-run
# model trained 2.6x slower beside the other worker (731 s against 284 s alone).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    )


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh SENTIBRIDGE_HOME with nothing of the user's MLflow or ZenML settings leaking in."""
    root = tmp_path / "home"
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(root))
    for var in ("MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_STORE_URL", "SENTIBRIDGE_STACK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZENML_ANALYTICS_OPT_IN", "false")
    monkeypatch.setenv("SENTIBRIDGE_MODEL_CACHE", str(MODEL_CACHE))
    monkeypatch.setenv("SENTIBRIDGE_EMBEDDING_CACHE", str(EMBEDDING_CACHE))
    return root


#: A new home's ZenML store and MLflow DB, created once per machine by the libraries themselves.
#: Creating them runs both libraries' migrations: about 10 s of CPU per home on 2 cores, a few
#: minutes over the suite. Tests about a home's first run (``test_validate_cli``) start bare.
HOME_TEMPLATE = REPO / ".sentibridge" / "test-home-template"

_CREATE_STORES = """
import sys
import mlflow
from zenml.client import Client
Client().active_stack_model  # creates the store: tables, flavours, default user, project and stack
mlflow.MlflowClient(tracking_uri=sys.argv[1]).search_experiments()  # creates the MLflow tables
"""


def seed_home(home: Path) -> Path:
    """Give a home that does not exist yet the stores a first command would create; returns ``home``.

    A copy of ``HOME_TEMPLATE``, its ZenML config and store moved to ``home`` as a copied home's
    are (``relocation``; its notice goes to the test's captured stderr, not a command's). MLflow's
    empty DB records no path.
    """
    import importlib.metadata
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    from filelock import FileLock

    from sentibridge.home import Home
    from sentibridge.relocation import repoint_zenml

    build = {name: importlib.metadata.version(name) for name in ("zenml", "mlflow", "sqlalchemy")}
    marker = HOME_TEMPLATE / "template.json"
    HOME_TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(HOME_TEMPLATE) + ".lock"):  # pytest-xdist workers build it once between them
        if not (marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == build):
            tmp = Path(tempfile.mkdtemp(dir=HOME_TEMPLATE.parent, prefix=".home-template-"))
            (tmp / "mlflow").mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_"))}
            env.update(ZENML_CONFIG_PATH=str(tmp / "zenml"), ZENML_ANALYTICS_OPT_IN="false")
            subprocess.run([sys.executable, "-c", _CREATE_STORES, f"sqlite:///{tmp / 'mlflow' / 'mlflow.db'}"],
                           cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
            (tmp / marker.name).write_text(json.dumps(build), encoding="utf-8")
            shutil.rmtree(HOME_TEMPLATE, ignore_errors=True)
            tmp.rename(HOME_TEMPLATE)
        assert not home.exists(), f"{home} exists: only a new home is seeded"
        (home / "mlflow").mkdir(parents=True)
        shutil.copytree(HOME_TEMPLATE / "zenml", home / "zenml")
        shutil.copy2(HOME_TEMPLATE / "mlflow" / "mlflow.db", home / "mlflow" / "mlflow.db")
    repoint_zenml(Home(root=home, tracking_uri=""))  # from the folder the template was built in
    return home


@pytest.fixture(scope="session")
def umsab() -> Path:
    if not (UMSAB / "README.md").is_file():
        pytest.skip(f"UMSAB not found at {UMSAB} (shared data absent on this machine)")
    return UMSAB


#: A real but tiny `sentibridge train`: 6 train rows and 3 test rows per language, 2 steps.
TINY_TRAIN = [
    "--set", "data.max_rows_per_language=6",
    "--set", "eval.max_rows_per_language=3",
    "--set", "train.max_steps=2",
    "--set", "train.batch_size=4",
    "--set", "train.eval_rows=4",
]


#: A tiny Gemma-3 (2 layers, 64 wide, Gemma's tokenizer cut to the sample: tests/tiny_tokenizer.py) saved as a local base model, built once
#: per machine by the integration conftest. For integration tests about the stack, the servers,
#: the registry or the CLI rather than the model: the whole pipeline runs as with Gemma-3-270M,
#: only every forward pass is far cheaper. Label issues are off: their embedder is not what these
#: tests are about either (tests of label issues set it back).
TINY_BASE = MODEL_CACHE / "tiny-gemma3-for-tests"
TINY_MODEL = ["--set", f"model.base={TINY_BASE}", "--set", "data.label_issues=off"]


def cli_env(home: Path, *, seeded: bool = True) -> dict[str, str]:
    """Environment for a `sentibridge` subprocess bound to ``home``.

    A home that does not exist yet is first given new stores (``seed_home``) unless ``seeded``
    is False: for tests of a home's first run, and homes whose stores are remote.
    """
    if seeded and not home.exists():
        seed_home(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_"))}
    env.update(
        SENTIBRIDGE_HOME=str(home),
        SENTIBRIDGE_MODEL_CACHE=str(MODEL_CACHE),
        SENTIBRIDGE_EMBEDDING_CACHE=str(EMBEDDING_CACHE),
        ZENML_ANALYTICS_OPT_IN="false",
        HF_HUB_OFFLINE="1",
    )
    return env


# --- model fixtures: the real Gemma tokenizer and tiny Gemma-3 models --------------------


def pytest_configure(config: pytest.Config) -> None:
    # Also registered here in case pyproject's [tool.pytest.ini_options] does not list them.
    config.addinivalue_line("markers", "integration: needs the real Gemma-3-270M weights or a full stack (slow)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def converted_model_dir() -> Path:
    """Where the tests keep the converted embedded Gemma-3-270M (shared with `make run`)."""
    return MODEL_CACHE / "gemma-3-270m"


@pytest.fixture(scope="session")
def gemma_tokenizer(request: pytest.FixtureRequest):
    """The real Gemma-3 tokenizer (262k vocabulary, chat template), loaded once per session.

    Taken from the converted model cache when present (~2 s); otherwise extracted from the
    embedded GGUF once (~20 s) into pytest's cache folder and reused by later sessions.
    """
    from filelock import FileLock

    from sentibridge.config import ModelConfig
    from sentibridge.model.base import convert_embedded_tokenizer, is_converted, load_tokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = converted_model_dir()
    if not is_converted(folder):
        folder = Path(request.config.cache.mkdir("gemma3-tokenizer"))
        with FileLock(str(folder) + ".lock"):  # pytest-xdist workers share the cache folder
            if not (folder / "tokenizer.json").is_file():
                convert_embedded_tokenizer(folder)
    return load_tokenizer(str(folder), ModelConfig())


@pytest.fixture(scope="session")
def tiny_gemma_config(gemma_tokenizer):
    """A 2-layer, 64-wide Gemma-3 text config with the real vocabulary size."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=len(gemma_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=gemma_tokenizer.pad_token_id,
        bos_token_id=gemma_tokenizer.bos_token_id,
        eos_token_id=gemma_tokenizer.eos_token_id,
        tie_word_embeddings=True,
        # Wider than the default 0.02: the final RMSNorm caps |h|, so with tiny tied embeddings
        # no adapter could move the logits enough to learn anything.
        initializer_range=0.2,
    )


@pytest.fixture
def tiny_gemma(tiny_gemma_config):
    """Factory: a freshly initialised tiny Gemma-3 causal LM (fp32, eval mode) for a seed."""
    import torch
    from transformers import Gemma3ForCausalLM

    def make(seed: int = 0):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(tiny_gemma_config)
        model.eval()
        return model

    return make


# --- two workers: `make test` runs `pytest -n 2 --dist loadscope --no-loadscope-reorder` -------

#: Folders whose tests share a session fixture too costly to build on both workers.
SHARED_FOLDERS = ("tests/integration/default_model/",)


def _scope(nodeid: str) -> str:
    """The unit one worker runs whole: a module, or a whole folder of ``SHARED_FOLDERS``."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in SHARED_FOLDERS if path.startswith(folder)), path)


@pytest.hookimpl(optionalhook=True)  # a venv without pytest-xdist still collects
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``--dist loadscope``: one worker per module (module fixtures are built once) and per shared folder.

    pytest-xdist's own ``loadgroup`` cannot do it with pytest 9: it marks groups by rewriting a
    node id that pytest 9 no longer reads.
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return ByModule(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Queue the long units first: the shared folders, then integration and slow modules, then unit tests.

    With two workers the session ends when its longest unit does, so that unit must not start
    last (``--no-loadscope-reorder`` keeps this order). Without xdist only the order changes.
    """
    def rank(item: pytest.Item) -> int:
        if _scope(item.nodeid) in SHARED_FOLDERS:
            return 0
        return 1 if item.get_closest_marker("integration") or item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: the collection order within a rank
