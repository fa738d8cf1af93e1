"""What the benchmarks share: their rows, the real base model, the CLI, the machine and the result files.

Rows come from the project's sample data (``data/sample/*.jsonl``) when present, otherwise a
few short multilingual rows are synthesised so the benchmarks run on a bare checkout; or from
UMSAB exactly as the pipeline makes them (``bench_rows``). ``run_cli`` runs the real
``sentibridge`` command in a fresh home; ``machine`` describes the CPU a result was measured on.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from sentibridge.config import ModelConfig, Settings
from sentibridge.data.ingest import read_dataset
from sentibridge.data.split import split_rows, subsample_per_language
from sentibridge.data.validation import check_quarantine_limit, validate_rows
from sentibridge.labels import normalise_label

REPO = Path(__file__).resolve().parents[1]
#: The UMSAB dataset where the machines that run the benchmarks keep it, beside the checkout.
UMSAB = REPO.parent / "shared" / "data" / "umsab"

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


def bench_rows(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rows exactly as the pipeline makes them (steps/ingest, split, evaluate)."""
    data_path = settings.data.path
    result = validate_rows(read_dataset(data_path), settings.data)
    check_quarantine_limit(rows_in=result.rows_in, quarantine=result.quarantine, cfg=settings.data, source=data_path)
    split = split_rows(result.valid, settings.split, settings.data)
    test = subsample_per_language(split.test, settings.eval.max_rows_per_language, settings.split.seed)
    return split.train.reset_index(drop=True), test.reset_index(drop=True)


def real_model_path() -> str:
    """The converted embedded Gemma-3-270M in the project home's model cache (converted on first use)."""
    # Imported here: torch and transformers would make every benchmark pay for them, the
    # serving and memory benchmarks included.
    from sentibridge.home import resolve_home
    from sentibridge.model.base import resolve_base_model

    return resolve_base_model(ModelConfig(), resolve_home().embedded_model)


def write_result(path: Path, summary: dict) -> None:
    """Write a benchmark's JSON result (UTF-8, indented) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def cli_command() -> list[str]:
    """The ``sentibridge`` command of this interpreter's environment (its script, else ``-m``)."""
    script = Path(sys.executable).parent / "sentibridge"
    if script.is_file():
        return [str(script)]
    found = shutil.which("sentibridge")
    return [found] if found else [sys.executable, "-m", "sentibridge.cli"]


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a ``sentibridge`` command in ``home``: this one without MLflow's and ZenML's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_"))}
    env.pop("SENTIBRIDGE_STACK", None)  # a bench never runs on someone's production stack
    env.update(SENTIBRIDGE_HOME=str(home), ZENML_ANALYTICS_OPT_IN="false", HF_HUB_OFFLINE="1")
    # Reuse the converted Gemma of `make run` and the tests (conversion takes about a minute).
    env.setdefault("SENTIBRIDGE_MODEL_CACHE", str(REPO / ".sentibridge" / "models"))
    return env


def run_cli(config: Path | None, overrides: list[str], home: Path, command: tuple[str, ...] = ("train",)
            ) -> tuple[int, dict | None, float]:
    """``sentibridge <command> --json`` (default ``train``) with progress (stderr) and its table (stdout) shown live.

    Returns (exit code, the JSON of the last stdout line or None, seconds).
    """
    env = cli_env(home)
    cmd = [*cli_command(), *command, *(["--config", str(config)] if config else []), "--json"]
    for pair in overrides:
        cmd += ["--set", pair]
    print("$ " + " ".join(cmd), flush=True)
    print(f"  SENTIBRIDGE_HOME={home}", flush=True)
    started = time.perf_counter()
    last = ""
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=None, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                last = line.strip()
            if not last.startswith("{"):  # the JSON line is summarised below, not echoed
                sys.stdout.write(line)
                sys.stdout.flush()
    seconds = time.perf_counter() - started
    try:
        payload = json.loads(last)
    except json.JSONDecodeError:
        payload = None
    return proc.returncode, payload, seconds


def merged_weights(run: Mapping, dst: Path) -> Path:
    """The merged weights of the version a ``train --json`` run registered (its ``tracking_uri``,
    ``registered_model`` and ``model_version``), downloaded once into ``dst``; returns their folder."""
    import mlflow

    mlflow.set_tracking_uri(run["tracking_uri"])
    if not dst.is_dir():
        mlflow.artifacts.download_artifacts(f"models:/{run['registered_model']}/{run['model_version']}", dst_path=str(dst))
    return next(p.parent for p in dst.rglob("config.json") if (p.parent / "model.safetensors").is_file())


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return ""


def cpu_model() -> str | None:
    """The CPU's marketing name (``model name`` in /proc/cpuinfo); None where there is none."""
    match = re.search(r"^model name\s*:\s*(.+)$", _cpuinfo(), re.MULTILINE)
    return match.group(1).strip() if match else None


def cpu_has_bf16() -> bool:
    """AVX512-BF16: bf16 autocast runs natively; without it the fp32 path runs, 1.4-2.3x slower."""
    return "avx512_bf16" in _cpuinfo().split()


def machine() -> dict:
    """The machine a result was measured on, for the result files (CPUs differ in bf16 support)."""
    return {"cpu": platform.machine(), "cpu_model": cpu_model(), "cpu_native_bf16": cpu_has_bf16(),
            "cpu_count": os.cpu_count()}
