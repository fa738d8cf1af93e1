"""LoRA training: answer-only loss, batching, learning, and exact resume from checkpoints."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from peft import get_peft_model_state_dict

from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.model.instructions import build_records
from sentibridge.model.precision import cpu_supports_bf16, resolve_precision
from sentibridge.model.batching import IGNORE_INDEX, collate, encode_records, epoch_batches
from sentibridge.model.checkpoints import keep_latest_checkpoint, latest_checkpoint, release_checkpoints, training_run_keys
from sentibridge.model.training import TrainJob, add_lora, answer_loss_sum, train_lora

TEXTS = [
    ("I love this, wonderful!", 2, "en"),
    ("Terrible service, never again.", 0, "en"),
    ("The package came on Monday.", 1, "en"),
    ("¡Me encanta!", 2, "es"),
    ("Es horrible.", 0, "es"),
    ("Llegó el lunes.", 1, "es"),
    ("C'est génial", 2, "fr"),
    ("C'est nul", 0, "fr"),
]

LORA = LoraConfig(r=4, alpha=8, dropout=0.1, target_modules="all-linear")


@pytest.fixture(scope="module")
def records(gemma_tokenizer):
    df = pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(len(TEXTS))],
            "text": [t for t, _, _ in TEXTS],
            "label": [y for _, y, _ in TEXTS],
            "language": [lang for _, _, lang in TEXTS],
        }
    )
    return build_records(df, gemma_tokenizer, max_length=96, seed=0)


def _train_cfg(**overrides) -> TrainConfig:
    base = dict(
        seed=3, max_steps=6, batch_size=3, learning_rate=5e-3, warmup_ratio=0.2, precision="fp32",
        eval_rows=4, resume=True, checkpoint_every=0,
    )
    return TrainConfig(**{**base, **overrides})


def _job(records, val, cfg: TrainConfig, output_dir) -> TrainJob:
    return TrainJob("", ModelConfig(), LORA, cfg, records, val, output_dir, "cpu")


def test_collate_masks_prompt_and_padding(records, gemma_tokenizer):
    examples = encode_records(records[:3], gemma_tokenizer)
    batch = collate(examples, gemma_tokenizer.pad_token_id)
    for row, example in enumerate(examples):
        labels = batch["labels"][row]
        n = len(example.input_ids)
        assert (labels[: example.prompt_len] == IGNORE_INDEX).all()
        assert labels[example.prompt_len : n].tolist() == example.input_ids[example.prompt_len :]
        assert (labels[n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][row].sum() == n


def test_answer_only_loss_equals_full_logits_loss(records, gemma_tokenizer, tiny_gemma):
    model = tiny_gemma(0)
    batch = collate(encode_records(records[:4], gemma_tokenizer), gemma_tokenizer.pad_token_id)
    with torch.no_grad():
        loss_sum, count = answer_loss_sum(model, batch)
        full = model(**batch).loss  # transformers' causal LM loss over the full vocabulary
    assert count == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(loss_sum / count, full, rtol=1e-5, atol=1e-5)


def test_label_smoothing_equals_smoothed_full_logits_loss(records, gemma_tokenizer, tiny_gemma):
    model = tiny_gemma(0)
    batch = collate(encode_records(records[:4], gemma_tokenizer), gemma_tokenizer.pad_token_id)
    with torch.no_grad():
        plain, count = answer_loss_sum(model, batch)
        smoothed, _ = answer_loss_sum(model, batch, label_smoothing=0.1)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        full = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), batch["labels"][:, 1:].reshape(-1), label_smoothing=0.1
        )
    assert not torch.isclose(smoothed, plain)
    torch.testing.assert_close(smoothed / count, full, rtol=1e-5, atol=1e-5)


def test_row_weights_scale_each_rows_answer_tokens(records, gemma_tokenizer, tiny_gemma):
    """A weight-0 row adds nothing, weight-1 rows add what they add unweighted; records carry weights."""
    model = tiny_gemma(0)
    frame = pd.DataFrame({"id": ["a", "b", "c"], "text": ["gut", "schlecht", "ok"], "label": [2, 0, 1],
                          "language": "de", "weight": [1.0, 0.3, float("nan")]})  # NaN: an added row
    assert ["weight" in r for r in build_records(frame, gemma_tokenizer, 96, 0)] == [False, True, False]
    weighted = [dict(r, weight=w) for r, w in zip(records[:3], (1.0, 0.0, 0.5))]
    examples = encode_records(weighted, gemma_tokenizer)
    assert [e.weight for e in examples] == [1.0, 0.0, 0.5]
    assert "weights" not in collate(encode_records(records[:3], gemma_tokenizer), gemma_tokenizer.pad_token_id)
    with torch.no_grad():
        total, _ = answer_loss_sum(model, collate(examples, gemma_tokenizer.pad_token_id))
        plain = encode_records(records[:3], gemma_tokenizer)
        parts = [answer_loss_sum(model, collate([e], gemma_tokenizer.pad_token_id))[0] for e in plain]
    torch.testing.assert_close(total, parts[0] + 0.5 * parts[2], rtol=1e-4, atol=1e-4)


def test_loss_ignores_prompt_tokens_targets(records, gemma_tokenizer, tiny_gemma):
    """Changing what the prompt says (same length) changes nothing but the context; changing
    a prompt token's *target* role is impossible: only answer positions reach the head."""
    model = tiny_gemma(0)
    batch = collate(encode_records(records[:2], gemma_tokenizer), gemma_tokenizer.pad_token_id)
    with torch.no_grad():
        reference, _ = answer_loss_sum(model, batch)
        # Marking prompt positions as targets in a copy must be what changes the loss...
        leaky = dict(batch, labels=torch.where(batch["attention_mask"].bool(), batch["input_ids"], IGNORE_INDEX))
        leaky_loss, leaky_count = answer_loss_sum(model, leaky)
        # ...while padding a row further (more pad targets) does not.
        padded = collate(encode_records(records[:2], gemma_tokenizer) , gemma_tokenizer.pad_token_id)
        wide = {k: torch.nn.functional.pad(v, (0, 5), value=gemma_tokenizer.pad_token_id if k == "input_ids" else (0 if k == "attention_mask" else IGNORE_INDEX)) for k, v in padded.items()}
        wide_loss, _ = answer_loss_sum(model, wide)
    assert leaky_count > int((batch["labels"] != IGNORE_INDEX).sum())
    assert not torch.isclose(leaky_loss, reference)
    torch.testing.assert_close(wide_loss, reference, rtol=1e-5, atol=1e-4)


def _padding(lengths, batches):
    return sum(len(b) * max(lengths[k] for k in b) - sum(lengths[k] for k in b) for b in batches)


def test_epoch_batches_deterministic_and_grouped():
    lengths = [5 + (37 * i) % 60 for i in range(64)]
    first = epoch_batches(lengths, 2, seed=1, epoch=0, group_by_length=True)
    assert first == epoch_batches(lengths, 2, seed=1, epoch=0, group_by_length=True)
    assert sorted(i for b in first for i in b) == list(range(64))
    assert max(lengths[k] for k in first[0]) == max(lengths)  # longest batch first
    plain = epoch_batches(lengths, 2, seed=1, epoch=0, group_by_length=False)
    assert _padding(lengths, first) < _padding(lengths, plain) / 4
    assert first != epoch_batches(lengths, 2, seed=1, epoch=1, group_by_length=True)
    assert epoch_batches(lengths, 2, seed=1, epoch=1, group_by_length=False) != plain


def test_training_reduces_loss(records, gemma_tokenizer, tiny_gemma, tmp_path):
    logged = []
    cfg = _train_cfg(max_steps=12, learning_rate=1e-1, warmup_ratio=0.0, lr_scheduler="constant")
    result = train_lora(
        tiny_gemma(0), gemma_tokenizer, _job(records, records, cfg, tmp_path), on_log=lambda step, m: logged.append((step, m)), progress=False
    )
    losses = [m["loss"] for _, m in logged if "loss" in m]
    assert len(losses) == 12 and result.steps == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 3.0  # nats
    assert {"learning_rate", "tokens_per_s"} <= set(logged[0][1])
    assert logged[-1] == (12, {"eval_loss": result.eval_loss})
    assert result.precision == "fp32" and result.tokens_per_s > 0
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint.name == "checkpoint-12"
    # Accelerate's save_state layout, with the adapter in place of the whole model.
    saved = {path.name for path in checkpoint.iterdir()}
    assert {"optimizer.bin", "scheduler.bin", "random_states_0.pkl", "adapter_model.safetensors"} <= saved
    assert not saved & {"model.safetensors", "pytorch_model.bin"}


def _adapter_state(output_dir):
    from safetensors.torch import load_file

    return load_file(output_dir / "adapter" / "adapter_model.safetensors")


def test_resume_matches_uninterrupted_run(records, gemma_tokenizer, tiny_gemma, tmp_path):
    cfg = _train_cfg(max_steps=6, checkpoint_every=2, gradient_accumulation_steps=2, batch_size=2)
    straight = train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, records, cfg, tmp_path / "a"), progress=False)

    class Crash(Exception):
        pass

    def crash_at_3(step, metrics):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, records, cfg, tmp_path / "b"), crash_at_3, False)
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-2"
    resumed = train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, records, cfg, tmp_path / "b"), progress=False)

    assert resumed.resumed_from == 2 and resumed.steps == 6
    # The first leg's training time and tokens count too: the resumed run saw the whole schedule.
    before = json.loads((tmp_path / "b" / "checkpoint-2" / "trainer_state.json").read_text())
    assert 0 < before["seconds"] < resumed.train_seconds and before["tokens"] > 0
    tokens = resumed.tokens_per_s * resumed.train_seconds
    assert tokens == pytest.approx(straight.tokens_per_s * straight.train_seconds, rel=1e-6)
    a, b = _adapter_state(tmp_path / "a"), _adapter_state(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-5)
    assert resumed.eval_loss == pytest.approx(straight.eval_loss, rel=1e-5)


def test_finished_run_with_its_final_checkpoint_kept_resumes_at_its_end(records, gemma_tokenizer, tiny_gemma, tmp_path):
    """What a run cut off after training (a soup member, or a run in evaluation) relies on: rerun, it trains no step again."""
    cfg = _train_cfg(max_steps=4, checkpoint_every=1)
    first = train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, records, cfg, tmp_path), progress=False)
    (tmp_path / ".checkpoint-9.tmp").mkdir()  # left by a save that was killed
    assert keep_latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert sorted(p.name for p in tmp_path.glob("*checkpoint-*")) == ["checkpoint-4"]
    adapter = _adapter_state(tmp_path)

    logged = []
    again = train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, records, cfg, tmp_path), lambda step, m: logged.append(m), False)
    assert again.resumed_from == 4 == again.steps
    assert not [m for m in logged if "loss" in m]  # no training step ran
    assert again.train_loss == pytest.approx(first.train_loss, rel=1e-6)
    assert again.eval_loss == pytest.approx(first.eval_loss, rel=1e-5)
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert again.train_seconds == state["seconds"] <= first.train_seconds  # what the finished run cost
    assert again.tokens_per_s == pytest.approx(state["tokens"] / state["seconds"])
    rewritten = _adapter_state(tmp_path)
    for key in adapter:  # the restored weights, not a fresh LoRA initialisation
        torch.testing.assert_close(rewritten[key], adapter[key], rtol=0, atol=0)
    assert keep_latest_checkpoint(tmp_path / "none") is None


def test_a_registered_model_releases_its_own_checkpoint_folders_only(tmp_path):
    for key in ("mine", "member1", "member2", "other"):
        (tmp_path / key / "checkpoint-2").mkdir(parents=True)
    single = {"run_key": "mine", "steps": 2}
    soup = {"steps": 4, "soup": {"members": [{"seed": 42, "run_key": "member1"}, {"seed": 7, "run_key": "member2"},
                                             {"seed": 123, "run_key": "gone"}]}}
    assert training_run_keys(single) == ["mine"] and training_run_keys(soup) == ["member1", "member2", "gone"]
    assert release_checkpoints(tmp_path, single) == ["mine"]
    assert release_checkpoints(tmp_path, soup) == ["member1", "member2"]  # a folder already gone is no error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]
    assert release_checkpoints(tmp_path, {"steps": 2}) == []  # a summary without a key (an old artifact)


def test_no_resume_starts_over(records, gemma_tokenizer, tiny_gemma, tmp_path):
    cfg = _train_cfg(max_steps=2)
    train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, [], cfg, tmp_path), progress=False)
    again = train_lora(tiny_gemma(0), gemma_tokenizer, _job(records, [], cfg.model_copy(update={"resume": False}), tmp_path), progress=False)
    assert again.resumed_from == 0 and again.eval_loss is None


def test_precision_resolution():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_supports_bf16() else "fp32")
    with pytest.raises(ValueError):
        resolve_precision("fp8", "cpu")


@pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")
def test_bf16_training_step_runs(records, gemma_tokenizer, tiny_gemma, tmp_path):
    model = tiny_gemma(0).to(torch.bfloat16)
    result = train_lora(model, gemma_tokenizer, _job(records, records[:2], _train_cfg(max_steps=2, precision="bf16"), tmp_path), progress=False)
    assert result.precision == "bf16" and result.eval_loss is not None


def test_add_lora_targets_all_linear_but_head(tiny_gemma):
    peft_model = add_lora(tiny_gemma(0), LORA)
    names = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in get_peft_model_state_dict(peft_model)}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names
    assert "lm_head" not in names
