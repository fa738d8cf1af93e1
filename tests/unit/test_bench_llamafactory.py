"""The pure helpers of bench/llamafactory_speed.py: LLaMA-Factory's YAML and the speed-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sentibridge.config_loading import load_settings


@pytest.fixture(scope="module")
def lf(import_bench):
    return import_bench("llamafactory_speed")


def test_the_llamafactory_config_is_the_issue_setting(lf, tmp_path: Path):
    settings = load_settings(lf.CONFIG, list(lf.SETTING))
    config = lf.llamafactory_config(settings, "/models/gemma", tmp_path / "data", tmp_path / "out", bf16=True)
    assert {k: config[k] for k in ("lora_rank", "lora_alpha", "lora_dropout", "cutoff_len",
                                   "per_device_train_batch_size", "num_train_epochs")} == {
        "lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0, "cutoff_len": 128,
        "per_device_train_batch_size": 8, "num_train_epochs": 1,
    }
    assert config["lora_target"] == "all" and config["template"] == "gemma" and config["finetuning_type"] == "lora"
    assert config["trust_remote_code"] is False and config["bf16"] is True and config["use_cpu"] is True
    assert config["disable_gradient_checkpointing"] is True  # its fastest: no recomputed forward
    # The schedule and seed are ours, so the two tools differ only in their training loops.
    assert config["learning_rate"] == settings.train.learning_rate and config["seed"] == settings.train.seed
    assert config["lr_scheduler_type"] == settings.train.lr_scheduler
    # llamafactory-cli reads it as plain YAML.
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_the_speedup_counts_our_slower_run_against_the_goal(lf):
    summary = lf.speedup_summary([300.0, 400.0], 1000.0)
    assert summary["ours_mean_seconds"] == 350.0
    assert summary["speedup"] == pytest.approx(1000 / 350)
    assert summary["speedup_each"] == pytest.approx([1000 / 300, 1000 / 400])
    assert summary["met"] is True  # 1000 / 400 = 2.5
    assert lf.speedup_summary([300.0, 401.0], 1000.0)["met"] is False
