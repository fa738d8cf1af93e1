"""Demonstration step: the labelled examples (and their vectors) that prompts show, as a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from sentibridge.augment.demonstrations import build_store
from sentibridge.augment.embedding import embedder_function
from sentibridge.config import DemonstrationsConfig, PrecisionSetting
from sentibridge.home import resolve_home
from steps.scratch import output_folder


@step
def demonstrations(
    train_rows: pd.DataFrame,
    demonstrations_cfg: DemonstrationsConfig,
    embedder: str,
    embed_batch_size: int,
    embed_precision: PrecisionSetting,
) -> Annotated[Path, "demonstration_store"]:
    """An empty store when ``demonstrations.k`` is 0; else the original train rows, embedded.

    Uses the augmentation embedder (``embedding.model``, ``embedding.batch_size``,
    ``embedding.precision``) and its cache, so texts the augment step embedded cost nothing.
    """
    cfg = demonstrations_cfg
    embed = embedder_function(embedder, resolve_home().embeddings, embed_batch_size, embed_precision)
    store = build_store(train_rows, embed, embedder, cfg)
    folder = store.save(output_folder("demonstration_store") / "store")
    log_metadata(metadata={"demonstration_rows": len(store), "k": cfg.k}, artifact_name="demonstration_store", infer_artifact=True)
    return folder
