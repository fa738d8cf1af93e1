"""Instruction step: rows -> instruction records (JSONL) and a LLaMA-Factory export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from materializers.records import InstructionRecords
from sentibridge.augment.demonstrations import DemonstrationStore, demonstrations_for
from sentibridge.augment.embedding import embedder_function
from sentibridge.config import ModelConfig, PrecisionSetting
from sentibridge.home import resolve_home
from sentibridge.model.base import load_tokenizer, resolve_base_model
from sentibridge.model.instructions import build_records, export_llamafactory
from steps.scratch import output_folder


@step
def instructions(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    demonstration_store: Path,
    model_cfg: ModelConfig,
    seed: int,
    embed_precision: PrecisionSetting,
) -> tuple[
    Annotated[InstructionRecords, "train_records"],
    Annotated[InstructionRecords, "val_records"],
    Annotated[Path, "llamafactory_dataset"],
]:
    """Records bounded by the tokenizer's budget, and the same data in alpaca format.

    ``seed`` (``instructions.seed``) picks each row's template; ``embed_precision``
    (``embedding.precision``) embeds the rows that look up their demonstrations.
    """
    home = resolve_home()
    base = resolve_base_model(model_cfg, home.embedded_model)
    tokenizer = load_tokenizer(base, model_cfg)
    store = DemonstrationStore.load(demonstration_store)
    embed = embedder_function(store.embedder, home.embeddings, precision=embed_precision)
    train = build_records(
        train_rows, tokenizer, model_cfg.max_length, seed, demonstrations=demonstrations_for(train_rows, store, embed)
    )
    val = build_records(val_rows, tokenizer, model_cfg.max_length, seed, demonstrations=demonstrations_for(val_rows, store, embed))
    export = output_folder("llamafactory_dataset")
    export_llamafactory(train, export, name="sentibridge_train")
    export_llamafactory(val, export, name="sentibridge_val")
    return InstructionRecords(train), InstructionRecords(val), export
