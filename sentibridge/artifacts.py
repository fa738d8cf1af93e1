"""Where a training run keeps its files in MLflow: one name per artifact, written by one step and
read back by others (the gate and ``compare`` read the evaluate step's predictions)."""

from __future__ import annotations

#: The evaluate step's folder: the predictions, per-language scores and label offsets.
EVALUATION = "evaluation"
#: ``id, language, label, pred`` of the evaluated test rows: what the gate and ``compare`` pair up.
PREDICTIONS = f"{EVALUATION}/predictions.parquet"
#: Per-language F1 and accuracy; a soup member's file is ``<member>_per_language.json``.
PER_LANGUAGE = "per_language.json"
#: The evaluate step's plots.
PLOTS = "plots"
#: The gate step's folder (its comparison plot), and its whole record.
GATE = "gate"
DECISION = f"{GATE}/decision.json"
#: A soup's members: their seeds and adapters (register step), and their scores (gate step).
SOUP_MEMBERS = "soup/members.json"
SOUP_MEMBER_F1 = "soup/member_f1.json"
#: The run's resolved configuration, as JSON and as YAML.
RESOLVED_CONFIG_JSON = "config/resolved_config.json"
RESOLVED_CONFIG_YAML = "config/resolved_config.yaml"
#: The data report and the likely label errors of the run's data.
DATA_REPORT = "data/data_report.json"
LABEL_ISSUES = "data/label_issues.json"
