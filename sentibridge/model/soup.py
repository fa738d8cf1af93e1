"""A weight soup of K LoRA adapters (retrains that differ by seed), stored as one LoRA adapter.

The soup averages the members' merged weights::

    W_soup = W0 + (1/K) * sum_i s * B_i @ A_i,        s = lora_alpha / r  (peft, without rsLoRA)

and that sum is exactly one LoRA product of rank K*r: stack the A's along the rank dimension
(rows), concatenate the B's along the rank dimension (columns), so ``B @ A = sum_i B_i @ A_i``.
Keeping ``lora_alpha`` and setting ``r = K*r`` makes peft's scaling ``alpha / (K*r) = s / K``,
the 1/K of the mean, with no tensor rescaled (so no rounding in bf16 members). Evaluation,
registration (merge) and serving load it like any adapter, and it stays K adapters small.

Only plain LoRA qualifies: rsLoRA scales by alpha/sqrt(r), so a K*r soup would come out
sqrt(K) too strong; DoRA's magnitude vector, per-module rank/alpha patterns, LoRA biases and
``modules_to_save`` copies are not a sum of low-rank products. Such members are refused rather
than averaged approximately.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sentibridge.errors import SentibridgeError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: Written next to the soup's adapter: which members went into it.
SOUP_FILE = "soup.json"

#: Config fields the members must share: the same base, the same layers, the same LoRA shape.
_MUST_AGREE = (
    "peft_type", "base_model_name_or_path", "target_modules", "r", "lora_alpha", "fan_in_fan_out", "layer_replication"
)
#: Options that make an adapter more than sum(s * B @ A) (another scaling, extra tensors, another
#: forward pass); each must be unset. Read with .get(): older peft versions lack some of them.
_MUST_BE_OFF = (
    "use_rslora",  # scaling alpha/sqrt(r): a rank-K*r soup would be sqrt(K) too strong
    "use_dora",  # a learned magnitude per output: not linear in B @ A
    "rank_pattern",  # per-module r or alpha: the config's r and alpha would not be every module's
    "alpha_pattern",
    "lora_bias",  # a bias on lora_B, scaled like B @ A but not a low-rank product
    "modules_to_save",  # full trainable copies of modules, not LoRA weights
    "trainable_token_indices",
    "target_parameters",  # LoRA on raw parameters (e.g. MoE experts): rank laid out per expert
    "alora_invocation_tokens",  # activated LoRA: applied only after a token sequence
    "use_qalora",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
    "velora_config",
    "monteclora_config",
)
#: Initialisations that rewrite the base weights (W0 -> W0 - initial B @ A): such an adapter
#: only holds on top of its own residual base, and each member's residual differs.
_BASE_REWRITING_INITS = ("pissa", "corda", "olora", "mica", "loftq", "lora_ga")
#: The only tensors a plain LoRA adapter saves (peft drops the adapter name from the keys).
_LORA_KEY = re.compile(r"\.lora_([AB])\.weight$")


def soup_adapters(members: Sequence[Path], dst: Path, names: Sequence[str] | None = None) -> Path:
    """Average ``members`` (peft LoRA adapter folders) into one adapter folder ``dst``; return it.

    ``dst`` gets ``adapter_config.json`` (r = K*r, lora_alpha unchanged, the rest from the first
    member), ``adapter_model.safetensors`` (in the members' dtype) and ``soup.json`` (K and the
    members, as ``names`` or else their folder names: ZenML hands step inputs over as temporary
    folders, whose names mean nothing). One member is copied as it is. Members that are not
    retrains of one plain LoRA adapter raise ``SentibridgeError`` naming the member and what
    differs. ``dst`` must not exist or be empty; it is built beside itself and renamed, so a
    failure leaves nothing half-written.
    """
    members = [Path(m) for m in members]
    if not members:
        raise SentibridgeError("a soup needs at least one LoRA adapter")
    names = [m.name for m in members] if names is None else [str(n) for n in names]
    if len(names) != len(members):
        raise SentibridgeError(f"a soup of {len(members)} adapters got {len(names)} names for them")
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise SentibridgeError(f"soup destination {dst} exists and is not an empty folder")
    for member in members:
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (member / name).is_file():
                # Pickled adapter_model.bin files are not read on purpose: unpickling runs code.
                raise SentibridgeError(f"soup member {member}: no {name} (a peft adapter folder in safetensors is needed)")

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
    try:
        if len(members) == 1:
            # The mean of one adapter is that adapter: copied byte for byte, whatever its kind.
            shutil.copytree(members[0], tmp, dirs_exist_ok=True)
        else:
            _write_soup(members, tmp)
        soup = {"k": len(members), "members": names}
        (tmp / SOUP_FILE).write_text(json.dumps(soup, indent=2) + "\n", encoding="utf-8")
        if dst.exists():
            dst.rmdir()  # empty, checked above
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _write_soup(members: list[Path], out: Path) -> None:
    """Check the members against the first one, then write the rank-K*r config and weights to ``out``."""
    configs = [_read_config(m) for m in members]
    first, first_cfg = members[0], configs[0]
    for member, cfg in zip(members, configs):
        _check_plain_lora(member, cfg)
        for key in _MUST_AGREE:
            if _normalise(cfg.get(key)) != _normalise(first_cfg.get(key)):
                raise SentibridgeError(
                    f"soup member {member}: {key} is {cfg.get(key)!r} but {first} has {first_cfg.get(key)!r}"
                    if key != "target_modules"
                    else f"soup member {member}: target_modules differ from {first}'s"
                )
    r, k = int(first_cfg["r"]), len(members)

    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(m / ADAPTER_WEIGHTS), framework="pt")) for m in members]
        # Shapes and dtypes come from the headers, so every member is checked before any tensor is read.
        layouts = [_layout(m, h, r) for m, h in zip(members, handles)]
        for member, layout in zip(members, layouts):
            if layout.keys() != layouts[0].keys():
                odd = sorted(layout.keys() ^ layouts[0].keys())
                raise SentibridgeError(
                    f"soup member {member}: its LoRA weights are not {first}'s ({len(odd)} keys in only one, e.g. {odd[0]})"
                )
            for key, (shape, dtype) in layout.items():
                if (shape, dtype) != layouts[0][key]:
                    raise SentibridgeError(
                        f"soup member {member}: {key} is {dtype} {list(shape)} but {first} has "
                        f"{layouts[0][key][1]} {list(layouts[0][key][0])}"
                    )
        tensors = {}
        for key in sorted(layouts[0]):
            # A is (r, in): stack rows. B is (out, r): concatenate columns. Then B @ A = sum_i B_i @ A_i.
            dim = 0 if _LORA_KEY.search(key).group(1) == "A" else 1
            tensors[key] = torch.cat([h.get_tensor(key) for h in handles], dim=dim).contiguous()
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})  # peft's own metadata

    # alpha stays: peft's scaling alpha / (K*r) is then the members' alpha / r divided by K.
    config = {**first_cfg, "r": k * r}
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_config(member: Path) -> dict[str, Any]:
    try:
        config = json.loads((member / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SentibridgeError(f"soup member {member}: unreadable {ADAPTER_CONFIG} ({exc})") from exc
    if not isinstance(config, dict):
        raise SentibridgeError(f"soup member {member}: {ADAPTER_CONFIG} is not a JSON object")
    return config


def _check_plain_lora(member: Path, cfg: dict[str, Any]) -> None:
    """Raise unless ``cfg`` is a plain LoRA adapter whose effect is ``alpha / r * B @ A``."""
    if cfg.get("peft_type") != "LORA":
        raise SentibridgeError(f"soup member {member}: peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    if not isinstance(cfg.get("r"), int) or cfg["r"] < 1:
        raise SentibridgeError(f"soup member {member}: r is {cfg.get('r')!r}, not a positive integer")
    for key in _MUST_BE_OFF:
        if cfg.get(key):
            raise SentibridgeError(f"soup member {member}: {key} is set ({cfg[key]!r}); only plain LoRA adapters can be souped")
    init = cfg.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise SentibridgeError(
            f"soup member {member}: init_lora_weights {init!r} rewrites the base weights; convert it to a plain LoRA first"
        )


def _layout(member: Path, handle: Any, r: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) of a member's tensors; raise on anything but LoRA A/B pairs of rank ``r``."""
    layout = {}
    for key in handle.keys():
        match = _LORA_KEY.search(key)
        if match is None:
            raise SentibridgeError(f"soup member {member}: holds {key}, which is not a LoRA A or B weight")
        tensor = handle.get_slice(key)
        shape = tuple(tensor.get_shape())
        rank = shape[0] if match.group(1) == "A" else shape[1] if len(shape) > 1 else None
        if rank != r:
            raise SentibridgeError(f"soup member {member}: {key} has shape {list(shape)}, not rank r={r} of its config")
        layout[key] = (shape, tensor.get_dtype())
    for key in layout:
        partner = _LORA_KEY.sub(lambda m: ".lora_B.weight" if m.group(1) == "A" else ".lora_A.weight", key)
        if partner not in layout:
            raise SentibridgeError(f"soup member {member}: {key} has no {partner}")
    if not layout:
        raise SentibridgeError(f"soup member {member}: {ADAPTER_WEIGHTS} holds no tensors")
    return layout


def _normalise(value: Any) -> Any:
    """target_modules is saved as a list in set order, which differs between processes."""
    return sorted(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
