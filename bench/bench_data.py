"""Benchmark inputs shared by the bench scripts: rows, and the real base model.

Rows come from the project's sample data (``data/sample/*.jsonl``) when present; otherwise a
few short multilingual rows are synthesised so the benchmarks run on a bare checkout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sentibridge.model.base import resolve_base_model
from sentibridge.home import resolve_home
from sentibridge.config import ModelConfig
from sentibridge.labels import normalise_label

SAMPLE_GLOB = "data/sample/*.jsonl"

_SYNTHETIC = {
    "en": ("I absolutely love this, best purchase ever!", "It arrived on Tuesday in a box.", "Terrible, it broke on day one."),
    "es": ("¡Me encanta, es perfecto!", "El paquete llegó el martes.", "Horrible, se rompió enseguida."),
    "fr": ("J'adore, c'est parfait !", "Le colis est arrivé mardi.", "Nul, il s'est cassé tout de suite."),
    "de": ("Ich liebe es, einfach großartig!", "Das Paket kam am Dienstag.", "Schrecklich, sofort kaputt."),
    "ar": ("أحببته كثيرا، رائع جدا!", "وصل الطرد يوم الثلاثاء.", "سيء جدا، تعطل فورا."),
    "hi": ("मुझे यह बहुत पसंद है, शानदार!", "पार्सल मंगलवार को आया।", "बहुत खराब, तुरंत टूट गया।"),
}


def load_rows(n_rows: int, seed: int = 0, root: Path = Path(".")) -> pd.DataFrame:
    """``n_rows`` rows with ``id, text, label (int), language``, balanced over languages."""
    files = sorted(root.glob(SAMPLE_GLOB))
    if files:
        df = pd.concat([pd.read_json(f, lines=True) for f in files], ignore_index=True)
        df["label"] = df["label"].map(normalise_label)
        df = df[df["label"] >= 0]
    else:
        rows = [
            {"text": text, "label": label, "language": lang}
            for lang, texts in _SYNTHETIC.items()
            for label, text in enumerate(reversed(texts))
        ]
        df = pd.DataFrame(rows * max(1, -(-n_rows // len(rows))))
    if "id" not in df.columns:
        df["id"] = [f"row-{i}" for i in range(len(df))]
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    # Round-robin over languages so small benches still cover all of them.
    df["_rank"] = df.groupby("language").cumcount()
    df = df.sort_values(["_rank", "language"], kind="stable").drop(columns="_rank")
    df = df.head(n_rows).reset_index(drop=True)
    df["id"] = df["id"].astype(str) + "-" + df.index.astype(str)
    return df[["id", "text", "label", "language"]]


def real_model_path() -> str:
    """The converted embedded Gemma-3-270M in the project home's model cache (converted on first use)."""
    return resolve_base_model(ModelConfig(), resolve_home().embedded_model)


def write_result(path: Path, summary: dict) -> None:
    """Write a benchmark's JSON result (UTF-8, indented) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
