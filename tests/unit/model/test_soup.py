"""A soup of K LoRA adapters stored as one rank-K*r adapter equals the mean of the merged members."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from sentibridge.errors import SentibridgeError
from sentibridge.model.soup import ADAPTER_CONFIG, ADAPTER_WEIGHTS, SOUP_FILE, soup_adapters

SEEDS = (1, 2, 3)
IDS = torch.tensor([[2, 105, 4368, 107, 9259, 106]])


def _base(config):
    """The shared base model: the same weights for every member (seed 0)."""
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def _member(config, folder, seed: int, r: int = 4, alpha: int = 8, target_modules="all-linear"):
    """Save a LoRA adapter with random A (peft's init, from ``seed``) and random non-zero B.

    Returns the member's merged state dict (fp32), the reference the soup is compared with.
    """
    base = _base(config)
    torch.manual_seed(seed)  # after the base, which seeds 0 for itself
    cfg = PeftLoraConfig(r=r, lora_alpha=alpha, target_modules=target_modules, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, which would make every merge the base
                param.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    return {k: v.detach().clone() for k, v in model.merge_and_unload().state_dict().items()}


@pytest.fixture(scope="module")
def members(tiny_gemma_config, tmp_path_factory):
    """Three seeds' adapters on one base, and the mean of their merged weights."""
    root = tmp_path_factory.mktemp("members")
    folders, merged = [], []
    for seed in SEEDS:
        folders.append(root / f"seed{seed}")
        merged.append(_member(tiny_gemma_config, folders[-1], seed))
    mean = {k: torch.stack([m[k] for m in merged]).mean(dim=0) for k in merged[0]}
    return folders, merged, mean


@pytest.fixture(scope="module")
def soup_dir(members, tmp_path_factory):
    folders, _, _ = members
    return soup_adapters(folders, tmp_path_factory.mktemp("soup") / "adapter")


def _load_soup(config, soup_dir) -> PeftModel:
    return PeftModel.from_pretrained(_base(config), str(soup_dir)).eval()


def test_soup_is_one_rank_k_r_adapter(members, soup_dir):
    folders, _, _ = members
    config = json.loads((soup_dir / ADAPTER_CONFIG).read_text())
    first = json.loads((folders[0] / ADAPTER_CONFIG).read_text())
    assert config["r"] == 3 * 4 and config["lora_alpha"] == 8  # scaling 8/12 = (8/4) / 3
    assert {k: v for k, v in config.items() if k != "r"} == {k: v for k, v in first.items() if k != "r"}
    soup = json.loads((soup_dir / SOUP_FILE).read_text())
    assert soup["k"] == 3 and soup["members"] == ["seed1", "seed2", "seed3"]
    tensors = load_file(soup_dir / ADAPTER_WEIGHTS)
    member = load_file(folders[0] / ADAPTER_WEIGHTS)
    assert tensors.keys() == member.keys()
    for key, tensor in tensors.items():
        a, b = member[key].shape
        assert tensor.shape == ((3 * a, b) if ".lora_A." in key else (a, 3 * b))
        assert tensor.dtype == torch.float32


def test_merged_soup_equals_the_mean_of_the_merged_members(tiny_gemma_config, members, soup_dir):
    _, merged, mean = members
    got = _load_soup(tiny_gemma_config, soup_dir).merge_and_unload().state_dict()
    assert got.keys() == mean.keys()
    for key in mean:
        torch.testing.assert_close(got[key], mean[key], rtol=0, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
    # The comparison can tell: members differ from the base, from each other and from the mean by >> atol.
    base = _base(tiny_gemma_config).state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert (merged[0][q] - base[q]).abs().max() > 1e-2
    assert (merged[0][q] - merged[1][q]).abs().max() > 1e-2
    assert (got[q] - merged[0][q]).abs().max() > 1e-2


def test_soup_logits_equal_the_mean_merged_model(tiny_gemma_config, members, soup_dir):
    _, merged, mean = members
    averaged = _base(tiny_gemma_config)
    averaged.load_state_dict(mean)
    with torch.no_grad():
        expected = averaged(input_ids=IDS).logits
        got = _load_soup(tiny_gemma_config, soup_dir)(input_ids=IDS).logits  # unmerged: the LoRA forward path
        one_member = _base(tiny_gemma_config)
        one_member.load_state_dict(merged[0])
        other = one_member(input_ids=IDS).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert (other - expected).abs().max() > 1e-2  # a single member's logits would not pass


def test_one_member_is_given_back(members, tmp_path):
    folders, _, _ = members
    out = soup_adapters([folders[1]], tmp_path / "one")
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        assert (out / name).read_bytes() == (folders[1] / name).read_bytes()
    assert json.loads((out / SOUP_FILE).read_text()) == {"k": 1, "members": ["seed2"]}
    named = soup_adapters([folders[1]], tmp_path / "named", names=["seed 7"])
    assert json.loads((named / SOUP_FILE).read_text())["members"] == ["seed 7"]
    with pytest.raises(SentibridgeError, match="got 2 names"):
        soup_adapters([folders[1]], tmp_path / "soup", names=["a", "b"])


def test_members_dtype_is_kept(members, tmp_path):
    folders, _, _ = members
    halves = []
    for folder in folders[:2]:
        half = tmp_path / f"bf16-{folder.name}"
        shutil.copytree(folder, half)
        tensors = {k: v.to(torch.bfloat16) for k, v in load_file(folder / ADAPTER_WEIGHTS).items()}
        save_file(tensors, str(half / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        halves.append(half)
    out = load_file(soup_adapters(halves, tmp_path / "soup") / ADAPTER_WEIGHTS)
    assert {t.dtype for t in out.values()} == {torch.bfloat16}
    key = next(k for k in out if ".lora_B." in k)
    second = load_file(halves[1] / ADAPTER_WEIGHTS)[key]
    assert torch.equal(out[key][:, second.shape[1]:], second)  # concatenated, not rescaled or rounded


def test_a_member_of_another_rank_is_refused_by_name(tiny_gemma_config, members, tmp_path):
    folders, _, _ = members
    odd = tmp_path / "rank8"
    _member(tiny_gemma_config, odd, seed=9, r=8, alpha=16)  # same scaling 2, other rank
    with pytest.raises(SentibridgeError, match=r"soup member .*rank8: r is 8 but .*seed1 has 4"):
        soup_adapters([*folders, odd], tmp_path / "soup")
    assert not (tmp_path / "soup").exists() and not list(tmp_path.glob(".soup.tmp-*"))


def _edited(folder, dst, **changes):
    """A copy of a member with ``changes`` in its adapter_config.json."""
    shutil.copytree(folder, dst)
    config = json.loads((dst / ADAPTER_CONFIG).read_text())
    (dst / ADAPTER_CONFIG).write_text(json.dumps({**config, **changes}))
    return dst


def test_a_member_of_another_alpha_is_refused_by_name(members, tmp_path):
    folders, _, _ = members
    odd = _edited(folders[2], tmp_path / "alpha16", lora_alpha=16)
    with pytest.raises(SentibridgeError, match=r"soup member .*alpha16: lora_alpha is 16 but .*seed1 has 8"):
        soup_adapters([*folders[:2], odd], tmp_path / "soup")


@pytest.mark.parametrize(
    "changes",
    [
        {"use_rslora": True},
        {"use_dora": True},
        {"rank_pattern": {"q_proj": 8}},
        {"alpha_pattern": {"q_proj": 16}},
        {"init_lora_weights": "pissa"},
        {"base_model_name_or_path": "other/model"},
        {"target_modules": ["q_proj"]},
    ],
    ids=lambda c: next(iter(c)),
)
def test_members_that_are_not_plain_retrains_are_refused(members, tmp_path, changes):
    folders, _, _ = members
    odd = _edited(folders[1], tmp_path / "odd", **changes)
    key = next(iter(changes))
    with pytest.raises(SentibridgeError, match=rf"soup member .*odd: {key}"):
        soup_adapters([folders[0], odd], tmp_path / "soup")


def test_target_modules_in_another_order_are_the_same(members, tmp_path):
    folders, _, _ = members
    config = json.loads((folders[1] / ADAPTER_CONFIG).read_text())
    shuffled = _edited(folders[1], tmp_path / "shuffled", target_modules=config["target_modules"][::-1])
    soup_adapters([folders[0], shuffled], tmp_path / "soup")  # peft saves a set in hash order


def test_extra_or_missing_tensors_are_refused(members, tmp_path):
    folders, _, _ = members
    tensors = load_file(folders[1] / ADAPTER_WEIGHTS)
    extra = _edited(folders[1], tmp_path / "extra")
    save_file({**tensors, "base_model.model.lm_head.weight": torch.zeros(2, 2)}, str(extra / ADAPTER_WEIGHTS))
    with pytest.raises(SentibridgeError, match=r"soup member .*extra: holds base_model.model.lm_head.weight"):
        soup_adapters([folders[0], extra], tmp_path / "soup1")
    fewer = _edited(folders[1], tmp_path / "fewer")
    drop = [k for k in tensors if ".layers.1.mlp.up_proj." in k]
    save_file({k: v for k, v in tensors.items() if k not in drop}, str(fewer / ADAPTER_WEIGHTS))
    with pytest.raises(SentibridgeError, match=r"soup member .*fewer: its LoRA weights are not"):
        soup_adapters([folders[0], fewer], tmp_path / "soup2")


def test_nothing_to_soup_or_nowhere_to_put_it(members, tmp_path):
    folders, _, _ = members
    with pytest.raises(SentibridgeError, match="at least one"):
        soup_adapters([], tmp_path / "soup")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SentibridgeError, match="not an empty folder"):
        soup_adapters(folders, tmp_path / "full")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folders[0] / ADAPTER_CONFIG, pickled)
    with pytest.raises(SentibridgeError, match=r"soup member .*pickled: no adapter_model.safetensors"):
        soup_adapters([folders[0], pickled], tmp_path / "soup")


# --- the soup step's summary (steps/soup.py; the step itself only adds I/O) ---------------


def test_soup_summary_sums_the_cost_and_keeps_each_member():
    from steps.soup import soup_summary

    def member(loss, steps, seconds, tokens_per_s, resumed_from=None):
        return {"base_model": "b", "precision": "bf16", "device": "cpu", "world_size": 1, "train_records": 10,
                "steps": steps, "train_loss": loss, "eval_loss": loss + 1, "train_seconds": seconds,
                "tokens_per_s": tokens_per_s, "resumed_from": resumed_from, "run_key": f"key{steps}"}

    # The second member finished before an interruption: the rerun resumed it at its end.
    summary = soup_summary([member(0.5, 10, 1.0, 100.0), member(0.7, 12, 3.0, 60.0, resumed_from=12)], [3, 4])
    assert summary == {
        "base_model": "b", "precision": "bf16", "device": "cpu", "world_size": 1, "train_records": 10,
        "steps": 22, "train_seconds": 4.0, "tokens_per_s": (100.0 + 180.0) / 4.0, "resumed_from": 12,
        "soup": {"seeds": [3, 4], "members": [
            {"seed": 3, "train_loss": 0.5, "eval_loss": 1.5, "steps": 10, "resumed_from": None, "run_key": "key10"},
            {"seed": 4, "train_loss": 0.7, "eval_loss": 1.7, "steps": 12, "resumed_from": 12, "run_key": "key12"},
        ]},
    }
    with pytest.raises(SentibridgeError, match="one train summary per seed"):
        soup_summary([member(0.5, 10, 1.0, 1.0)], [3, 4])
