"""Text conditioning: instruction strings -> [B, max_tokens, out_dim] float32 CPU tensors.

Two encoders behind one interface:
- `HashTextEncoder`: light, deterministic and weight-free, for small presets and tests.
- `CosmosReasonTextEncoder`: the real one, Cosmos-Reason1-7B (Qwen2.5-VL-7B) as DiT4DiT uses it.

The instruction rarely changes while the 7B encoder is by far the most expensive call, so
`build_text_encoder` always wraps the encoder in `CachedTextEncoder` (memory LRU + optional disk).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

log = logging.getLogger(__name__)


@runtime_checkable
class TextEncoder(Protocol):
    @property
    def out_dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def name(self) -> str:
        """Identifies the encoder and every setting that changes its output (cache keys use it)."""
        ...

    def encode(self, texts: list[str]) -> torch.Tensor:
        """[B, max_tokens, out_dim] float32 on CPU."""
        ...


def _check_texts(texts: Any) -> list[str]:
    # A bare string is a sequence too; encoding it character by character would be a silent bug.
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(t).__name__}")
    return list(texts)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


_WORD = re.compile(r"\w+|[^\w\s]")


class HashTextEncoder:
    """Lowercase words and punctuation, each mapped to a fixed pseudo-random N(0, 1) vector, plus
    a sinusoidal position code; positions past the text are zero.

    A word's vector is drawn from numpy's PCG64 seeded with (seed, blake2b-64 of the word), which
    is the same in every process (Python's hash() is salted per process) and behaves like a
    lookup into an unbounded seeded table: no vocabulary, no collisions in practice. Text longer
    than max_tokens is truncated.
    """

    def __init__(self, out_dim: int, max_tokens: int, seed: int = 0):
        self.out_dim = _positive_int("out_dim", out_dim)
        self.max_tokens = _positive_int("max_tokens", max_tokens)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.name = f"hash-v1(out_dim={out_dim},max_tokens={max_tokens},seed={seed})"
        self._positions = _sinusoid(self.max_tokens, self.out_dim)

    def tokens(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())[: self.max_tokens]

    def _word_vector(self, word: str) -> np.ndarray:
        key = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        return np.random.default_rng([self.seed, key]).standard_normal(self.out_dim, dtype=np.float32)

    def encode(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.max_tokens, self.out_dim), dtype=np.float32)
        for b, text in enumerate(texts):
            words = self.tokens(text)
            for i, word in enumerate(words):
                out[b, i] = self._word_vector(word)
            out[b, : len(words)] += self._positions[: len(words)]
        return torch.from_numpy(out)


def _sinusoid(length: int, dim: int) -> np.ndarray:
    """Transformer position code: sin at even features, cos at odd, geometric wavelengths."""
    half = (dim + 1) // 2
    freqs = 10000.0 ** (-np.arange(half) / half)
    angles = np.arange(length)[:, None] * freqs[None, :]
    code = np.empty((length, 2 * half), dtype=np.float64)
    code[:, 0::2] = np.sin(angles)
    code[:, 1::2] = np.cos(angles)
    return code[:, :dim].astype(np.float32)


# diffusers' Cosmos-Predict2.5 pipeline (the video DiT DiT4DiT starts from) wraps every prompt in
# this system turn before encoding, so text features made this way are the ones that DiT knows.
COSMOS_SYSTEM_PROMPT = "You are a helpful assistant who will provide prompts to an image generator."

_MISSING_WEIGHTS = (
    "{what} {path!r} not found; this stack never downloads weights: "
    "point text.path at a local copy of Cosmos-Reason1-7B"
)


def concat_normalized_layers(hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
    """All hidden states as the model returns them with output_hidden_states=True, embedding
    output first -> [B, T, (len - 1) * hidden] float32.

    The embedding-layer output (index 0) is dropped; each remaining state is normalised per token
    over the hidden dim to zero mean and unit standard deviation, (h - mean) / (std + 1e-8) with the
    unbiased std, as diffusers' Cosmos-Predict2.5 pipeline does, and the results are concatenated in layer
    order. For Qwen2.5-VL-7B that is 29 states -> 28 x 3584 = 100352 features: the outputs of
    decoder layers 0..26 and, last, the output of layer 27 after the model's final RMSNorm
    (transformers reports the normed output as the last hidden state).
    """
    if len(hidden_states) < 2:
        raise ValueError(
            f"need the embedding output plus at least one layer's hidden states, got {len(hidden_states)}"
        )
    normalized = []
    for h in hidden_states[1:]:
        h = h.to(torch.float32)
        normalized.append((h - h.mean(dim=-1, keepdim=True)) / (h.std(dim=-1, keepdim=True) + 1e-8))
    return torch.cat(normalized, dim=-1)


class CosmosReasonTextEncoder:
    """Cosmos-Reason1-7B (Qwen2.5-VL-7B) text features, DiT4DiT/Cosmos-Predict2.5 style.

    Each instruction is put in a chat (system turn `COSMOS_SYSTEM_PROMPT`, user turn the
    instruction), tokenised with the model's chat template and padded or truncated to max_tokens
    with the tokenizer's pad token. The whole padded sequence runs through the language model with
    no attention mask, as diffusers' Cosmos-Predict2.5 pipeline does, so pad positions hold the same
    features there as in that pipeline (not zeros). Features: `concat_normalized_layers` of all
    hidden states (28 x 3584 = 100352).

    Only the folder's config is read at construction; the tokenizer and the 7B weights load on the
    first `encode`, so a run whose instructions are all in the disk cache never loads them. Only
    the language model is kept (the vision tower and LM head are not needed for text features).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_tokens: int = 512,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ):
        from transformers import AutoConfig

        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise FileNotFoundError(_MISSING_WEIGHTS.format(what="text encoder folder", path=str(path)))
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(_MISSING_WEIGHTS.format(what="config.json in", path=str(path)))
        self.max_tokens = _positive_int("max_tokens", max_tokens)
        self.device = torch.device(device)
        self.dtype = dtype
        config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        if config.model_type != "qwen2_5_vl":
            raise ValueError(
                f"{self.path}: model_type is {config.model_type!r}; expected 'qwen2_5_vl' (Cosmos-Reason1-7B)"
            )
        text_config = config.get_text_config()
        self.num_layers = int(text_config.num_hidden_layers)
        self.hidden_size = int(text_config.hidden_size)
        self.out_dim = self.num_layers * self.hidden_size
        # The folder's name and config identify the model; the weights' bytes are not hashed
        # (15 GB per start would be too slow), so give a fine-tuned copy a folder name of its own.
        config_digest = hashlib.sha256(config_file.read_bytes()).hexdigest()[:12]
        self.name = (
            f"cosmos_reason-v1(folder={self.path.resolve().name},config={config_digest},"
            f"max_tokens={self.max_tokens},dtype={str(dtype).removeprefix('torch.')})"
        )
        self._tokenizer: Any = None
        self._language_model: Any = None

    def _load(self) -> None:
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        if not any(self.path.glob("*.safetensors")):
            raise FileNotFoundError(
                _MISSING_WEIGHTS.format(what="*.safetensors weights in", path=str(self.path))
            )
        log.info("loading the text encoder from %s (%s on %s)", self.path, self.dtype, self.device)
        self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        full = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            self.path, local_files_only=True, dtype=self.dtype
        )
        # Keeping only the text model lets the vision tower and LM head be freed with `full`.
        self._language_model = full.model.language_model.to(self.device).eval().requires_grad_(False)

    def token_ids(self, texts: list[str]) -> torch.Tensor:
        """[B, max_tokens] int64 ids of the chat-formatted, padded/truncated instructions."""
        if self._tokenizer is None:
            self._load()
        conversations = [
            [
                {"role": "system", "content": [{"type": "text", "text": COSMOS_SYSTEM_PROMPT}]},
                {"role": "user", "content": [{"type": "text", "text": text}]},
            ]
            for text in texts
        ]
        encoded = self._tokenizer.apply_chat_template(
            conversations,
            tokenize=True,
            add_generation_prompt=False,
            add_vision_id=False,
            max_length=self.max_tokens,
            truncation=True,
            padding="max_length",
            return_dict=True,
            return_tensors="pt",
        )
        return encoded["input_ids"]

    def encode(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.max_tokens, self.out_dim)
        ids = self.token_ids(texts)
        # no_grad, not inference_mode: inference tensors could not be saved for a training backward.
        with torch.no_grad():
            out = self._language_model(input_ids=ids.to(self.device), output_hidden_states=True)
            features = concat_normalized_layers(out.hidden_states)
        if features.shape[-1] != self.out_dim:
            raise RuntimeError(f"{self.path}: got {features.shape[-1]} features, config says {self.out_dim}")
        return features.cpu()


class CachedTextEncoder:
    """Any TextEncoder behind a memory LRU and an optional disk cache; same interface.

    Keys are (encoder.name, text): a different model, length or seed never hits another's entries.
    Disk entries are `<sha256 of json [name, text]>.safetensors` in `cache_dir`, holding the
    [max_tokens, out_dim] float32 tensor plus the name, the text and a sha256 of the tensor bytes
    as metadata. Entries are written to a temporary file and moved into place with os.replace, so a
    crash never leaves a half-written entry under its final name; an entry that is unreadable,
    for another key, of the wrong shape or failing its checksum is recomputed and rewritten. A
    failed write only logs a warning: the cache is an optimisation, never a reason to stop.

    Per call, each distinct text counts once: `hits` those served from memory or disk (`disk_hits`
    those from disk), `misses` those the wrapped encoder computed; only the misses reach it, in one
    batch. Memory entries belong to this instance, so keying them by text alone is keying by
    (name, text). Safe to call from several threads.
    """

    def __init__(
        self, encoder: TextEncoder, cache_dir: str | os.PathLike[str] | None = None, max_entries: int = 256
    ):
        self.encoder = encoder
        self.max_entries = _positive_int("max_entries", max_entries)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    @property
    def out_dim(self) -> int:
        return self.encoder.out_dim

    @property
    def max_tokens(self) -> int:
        return self.encoder.max_tokens

    @property
    def name(self) -> str:
        return self.encoder.name

    def disk_path(self, text: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json.dumps([self.name, text]).encode("utf-8")).hexdigest()
        return self.cache_dir / f"{key}.safetensors"

    def encode(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        with self._lock:
            found: dict[str, torch.Tensor] = {}
            for text in dict.fromkeys(texts):
                entry = self._memory_get(text)
                if entry is None:
                    entry = self._disk_get(text)
                    if entry is not None:
                        self.disk_hits += 1
                        self._memory_put(text, entry)
                if entry is not None:
                    self.hits += 1
                    found[text] = entry
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            if missing:
                computed = self.encoder.encode(missing)
                expected = (len(missing), self.max_tokens, self.out_dim)
                if tuple(computed.shape) != expected:
                    raise RuntimeError(
                        f"{self.name} returned shape {tuple(computed.shape)}, expected {expected}"
                    )
                for text, entry in zip(missing, computed, strict=True):
                    # A copy, so an evicted entry does not keep its whole batch's storage alive.
                    entry = entry.to(device="cpu", dtype=torch.float32, copy=True).contiguous()
                    self.misses += 1
                    found[text] = entry
                    self._memory_put(text, entry)
                    self._disk_put(text, entry)
            if not texts:
                return torch.zeros(0, self.max_tokens, self.out_dim)
            # stack copies, so a caller editing its batch in place cannot corrupt the cache.
            return torch.stack([found[t] for t in texts])

    def _memory_get(self, text: str) -> torch.Tensor | None:
        entry = self._memory.get(text)
        if entry is not None:
            self._memory.move_to_end(text)
        return entry

    def _memory_put(self, text: str, entry: torch.Tensor) -> None:
        self._memory[text] = entry
        self._memory.move_to_end(text)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _disk_get(self, text: str) -> torch.Tensor | None:
        path = self.disk_path(text)
        if path is None or not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                entry = f.get_tensor("embedding")
        except Exception as e:  # whatever makes an entry unreadable, it is only a cache miss
            log.warning("text cache entry %s unreadable (%s); recomputing", path, e)
            return None
        problem = None
        if meta.get("name") != self.name or meta.get("text") != text:
            problem = "it belongs to another key"
        elif entry.dtype != torch.float32 or tuple(entry.shape) != (self.max_tokens, self.out_dim):
            problem = f"it holds {entry.dtype} {tuple(entry.shape)}"
        elif meta.get("sha256") != _digest(entry):
            problem = "its checksum does not match"
        if problem:
            log.warning("text cache entry %s ignored: %s; recomputing", path, problem)
            return None
        return entry

    def _disk_put(self, text: str, entry: torch.Tensor) -> None:
        path = self.disk_path(text)
        if path is None:
            return
        from safetensors.torch import save_file

        meta = {"name": self.name, "text": text, "sha256": _digest(entry)}
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            os.close(fd)
            save_file({"embedding": entry}, tmp, metadata=meta)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except Exception as e:  # a full or read-only disk must not stop the policy
            log.warning("could not write text cache entry %s (%s); continuing without it", path, e)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


ENCODER_KINDS = ("hash", "cosmos_reason")
_FIELDS = {
    "hash": ({"kind", "out_dim", "max_tokens"}, {"seed", "cache_dir", "cache_entries"}),
    "cosmos_reason": (
        {"kind", "path"},
        {"out_dim", "max_tokens", "device", "dtype", "cache_dir", "cache_entries"},
    ),
}
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def build_text_encoder(cfg: dict[str, Any]) -> CachedTextEncoder:
    """The encoder a preset's `text:` section describes, always behind a CachedTextEncoder.

    Fields: kind (hash | cosmos_reason); out_dim; max_tokens; seed (hash, default 0); path,
    device (default cpu), dtype (bfloat16 | float16 | float32, default bfloat16) for
    cosmos_reason, whose out_dim and max_tokens (default 512) are checked against the model
    when given; cache_dir (optional disk cache); cache_entries (memory LRU size, default 256 -
    one Cosmos-Reason entry is 512 x 100352 float32 = 205 MB, so keep it small there).
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"text config must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    if kind not in _FIELDS:
        raise ValueError(f"unknown text encoder kind {kind!r}; known kinds: {', '.join(ENCODER_KINDS)}")
    required, optional = _FIELDS[kind]
    missing, unknown = required - cfg.keys(), cfg.keys() - required - optional
    if missing or unknown:
        problems = [f"missing field(s) {sorted(missing)}"] if missing else []
        problems += [f"unknown field(s) {sorted(unknown)}"] if unknown else []
        raise ValueError(
            f"text encoder {kind!r}: {', '.join(problems)}; allowed: {sorted(required | optional)}"
        )
    encoder: TextEncoder
    if kind == "hash":
        encoder = HashTextEncoder(cfg["out_dim"], cfg["max_tokens"], cfg.get("seed", 0))
    else:
        dtype_name = cfg.get("dtype", "bfloat16")
        if dtype_name not in _DTYPES:
            raise ValueError(f"text.dtype {dtype_name!r} unknown; use one of {', '.join(_DTYPES)}")
        encoder = CosmosReasonTextEncoder(
            cfg["path"], cfg.get("max_tokens", 512), cfg.get("device", "cpu"), _DTYPES[dtype_name]
        )
        if "out_dim" in cfg and cfg["out_dim"] != encoder.out_dim:
            raise ValueError(
                f"text.out_dim is {cfg['out_dim']} but the model at {cfg['path']} gives "
                f"{encoder.num_layers} layers x {encoder.hidden_size} = {encoder.out_dim}"
            )
    return CachedTextEncoder(encoder, cfg.get("cache_dir"), cfg.get("cache_entries", 256))
