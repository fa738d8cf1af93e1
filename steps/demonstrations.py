"""Demonstration step: the labelled examples (and their vectors) that prompts show, as a folder."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from sentibridge.config import Settings
from sentibridge.augment.demonstrations import build_store
from sentibridge.augment.embedding import embedder_function
from sentibridge.home import resolve_home


@step
def demonstrations(train_rows: pd.DataFrame, settings: Settings) -> Annotated[Path, "demonstration_store"]:
    """An empty store when ``demonstrations.k`` is 0; else the original train rows, embedded.

    Uses the augmentation embedder and its cache, so texts the augment step embedded cost nothing.
    """
    cfg, augment = settings.demonstrations, settings.augment
    embed = embedder_function(augment.embedder, resolve_home().embeddings, augment.embed_batch_size, settings.train.precision)
    store = build_store(train_rows, embed, augment.embedder, cfg)
    folder = store.save(Path(tempfile.mkdtemp(prefix="sentibridge-demonstrations-")) / "store")
    log_metadata(metadata={"demonstration_rows": len(store), "k": cfg.k}, artifact_name="demonstration_store", infer_artifact=True)
    return folder
