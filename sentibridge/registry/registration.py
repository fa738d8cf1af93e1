"""Registering a model in MLflow: the pyfunc, its pinned requirements, its tags and descriptions.

One place registers a model, so the tags other parts read back (``f1_<lang>``) and the
registered model's description are written the same way every time.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import mlflow

from sentibridge.artifacts import DECISION

#: What a served model needs besides the bundled sentibridge code.
SERVING_PACKAGES = ("torch", "transformers", "peft", "accelerate", "safetensors", "pandas", "numpy", "pydantic", "pyyaml", "tqdm", "mlflow")

#: Version tags ``f1_<lang>``: one per language, so the registry UI shows each as its own column.
F1_TAG_PREFIX = "f1_"
#: The mean over languages shares the prefix but is not a language.
MEAN_F1_TAG = "f1_macro_avg"


def serving_requirements() -> list[str]:
    """Pinned to the versions this run used, so MLflow never has to infer them (slow)."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in SERVING_PACKAGES]


def f1_tags(per_language: Mapping[str, float]) -> dict[str, str]:
    """Per-language macro-F1 (0..1) as version tags ``f1_<lang>``."""
    return {f"{F1_TAG_PREFIX}{language}": f"{f1:.4f}" for language, f1 in sorted(per_language.items())}


def f1_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """Per-language F1 back from a version's tags (``f1_<lang>``, or the JSON blob of older versions)."""
    scores = {
        key[len(F1_TAG_PREFIX):]: float(value)
        for key, value in tags.items()
        if key.startswith(F1_TAG_PREFIX) and key != MEAN_F1_TAG
    }
    if not scores and "per_language_f1" in tags:  # versions registered before the per-language tags
        scores = {language: float(f1) for language, f1 in json.loads(tags["per_language_f1"]).items()}
    return scores


def model_description(name: str) -> str:
    """What the registered model is and how its versions become ``champion`` (Markdown)."""
    return "\n".join([
        f"**{name}**: three-way sentiment (negative, neutral, positive) for texts in many languages, "
        "an LLM instruction-tuned with LoRA by sentibridge. Input: `text` and optionally `language` "
        "(ISO 639-1); output: `label`, `label_id` and one score per label.",
        "",
        "**How versions get promoted.** Every trained model is registered with its macro-F1 per "
        "language on the test split (tags `f1_<lang>`, mean in `f1_macro_avg`) and its data version "
        "(`data_version`, the DVC md5). The gate then compares it with the current champion (or, "
        "before there is one, the base model zero-shot) on the same test rows, by the rule in the "
        "`gate.*` config; each version's description shows its decision as a per-language table "
        f"with the reasons, and the run keeps the full record as `{DECISION}`.",
        "",
        "**Aliases.**",
        "",
        "- `champion`: the version users get (`models:/" + name + "@champion`); the version it "
        "replaced is in its `previous_champion` tag, so `sentibridge rollback` can go back.",
        "- `challenger`: the latest version that did not pass the gate, or the one a rollback replaced.",
        "",
        "`sentibridge promote VERSION --reason TEXT` overrides the gate; the reason is added to that "
        "version's description.",
    ])


def log_and_register_model(merged_dir: Path, model_name: str, tags: dict[str, str]) -> dict[str, str]:
    """Log the merged model as an MLflow pyfunc (from code) and register a new version.

    The registered model gets its description the first time (or whenever it has none), so a
    description someone edited in the UI is kept.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import sentibridge
    from sentibridge.inference import mlflow_model
    from sentibridge.inference.serving import ARTIFACT_KEY
    from sentibridge.labels import SCORE_COLUMNS

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "language", required=False)]),
        outputs=Schema([ColSpec("string", "label", required=False), ColSpec("long", "label_id", required=False)]
                       + [ColSpec("double", c, required=False) for c in SCORE_COLUMNS]
                       + [ColSpec("boolean", "truncated", required=False), ColSpec("string", "error", required=False)]),
    )
    with _without_registry_notices():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=mlflow_model.__file__,
            artifacts={ARTIFACT_KEY: str(merged_dir)},
            code_paths=[str(Path(sentibridge.__file__).parent)],
            pip_requirements=serving_requirements(),
            signature=signature,
            registered_model_name=model_name,
            # With the version's creation (and on the logged model): one request instead of one per
            # tag, and no reader ever sees the new version without its scores.
            tags=tags,
        )
    version = str(info.registered_model_version)
    describe_registered_model(mlflow.MlflowClient(), model_name)
    return {"registered_model": model_name, "model_version": version, "model_uri": f"models:/{model_name}/{version}"}


#: What MLflow prints to stderr on every registration, whatever its log level (``eprint``).
_NOTICES = ("Successfully registered model '", "Registered model '", "Created version '")


@contextlib.contextmanager
def _without_registry_notices():
    """Drop MLflow's registration notices from stderr and keep everything else it writes there.

    The CLI reports the version itself; MLflow's warnings (same stream) still show.
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        kept = [line for line in buffer.getvalue().splitlines(keepends=True) if not line.startswith(_NOTICES)]
        sys.stderr.write("".join(kept))


def describe_registered_model(client: mlflow.MlflowClient, model_name: str) -> None:
    """Give the registered model its description unless it already has one."""
    if not client.get_registered_model(model_name).description:
        client.update_registered_model(model_name, description=model_description(model_name))
