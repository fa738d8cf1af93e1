"""The counting behind bench/utilisation.py's MFU: FLOPs from the config, and the profile buckets."""

from __future__ import annotations

import pytest
import torch

from sentibridge.config import LoraConfig
from sentibridge.model.batching import Example
from sentibridge.model.training import add_lora


@pytest.fixture(scope="module")
def util(import_bench):
    return import_bench("utilisation")


def test_parameter_counts_from_the_config_match_the_model(util, tiny_gemma, tiny_gemma_config):
    model = tiny_gemma(0)
    shape = util.model_shape(tiny_gemma_config)
    layers = model.model.layers
    linear = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    assert util.linear_params(shape) == linear
    peft_model = add_lora(model, LoraConfig(r=4, alpha=8))
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert util.lora_params(shape, 4) == lora


def test_train_flops_of_one_example(util, tiny_gemma_config):
    shape = util.model_shape(tiny_gemma_config)
    example = Example(input_ids=list(range(10)), prompt_len=8)  # 2 answer targets
    n_lin, n_lora = util.linear_params(shape), util.lora_params(shape, 4)
    attention = shape["layers"] * 2 * shape["heads"] * shape["head_dim"] * 10 * 11
    head = 4 * shape["vocab"] * shape["hidden"] * 2
    assert util.train_flops(shape, 4, example) == pytest.approx((4 * n_lin + 6 * n_lora) * 10 + 3 * attention + head)
    # Padding is no useful work: a longer row costs more, the same row padded does not change.
    longer = Example(input_ids=list(range(20)), prompt_len=18)
    assert util.train_flops(shape, 4, longer) > util.train_flops(shape, 4, example)
    assert util.forward_flops(shape, 10, [10]) == pytest.approx(2 * n_lin * 10 + attention)


@pytest.mark.parametrize(
    ("name", "under_optimizer", "expected"),
    [
        ("aten::mm", False, "matmul"),
        ("aten::addmm", False, "matmul"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", False, "attention"),
        ("aten::native_dropout", False, "lora_dropout"),
        ("aten::_to_copy", False, "casts"),
        ("aten::mul", False, "norms_elementwise"),
        ("aten::mul", True, "optimizer"),
        ("aten::_foreach_add_", True, "optimizer"),
    ],
)
def test_profile_buckets(util, name, under_optimizer, expected):
    assert util.bucket(name, under_optimizer) == expected


def test_step_profile_attributes_the_rest_to_overhead(util):
    buckets = {"seconds_per_step": {"matmul": 0.5, "attention": 0.1, "norms_elementwise": 0.2, "casts": 0.05,
                                    "lora_dropout": 0.0, "optimizer": 0.05}, "kernels_per_step": None}  # fmt: skip
    profile = util.step_profile(buckets, step_seconds=1.0)
    assert profile["seconds_per_step"]["python_overhead"] == pytest.approx(0.1)
    assert sum(profile["share"].values()) == pytest.approx(1.0)
    assert list(profile["seconds_per_step"]) == list(util.BUCKETS)


def test_padding_share(util):
    assert util.padding_share([5, 5, 5, 5], 2, group_by_length=True) == 0.0
    lengths = [5 + (37 * i) % 60 for i in range(64)]
    assert 0 < util.padding_share(lengths, 2, True) < util.padding_share(lengths, 2, False) < 1
