"""Text conditioning: hash encoder, Cosmos-Reason feature assembly on a tiny Qwen2.5-VL, caching."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dit4dit_policy.model import text as text_module
from dit4dit_policy.model.text import (
    COSMOS_SYSTEM_PROMPT,
    CachedTextEncoder,
    CosmosReasonTextEncoder,
    HashTextEncoder,
    TextEncoder,
    build_text_encoder,
    concat_normalized_layers,
)

# ---------------------------------------------------------------- hash encoder


def test_when_hash_encoding_expect_shape_dtype_and_zero_padding():
    enc = HashTextEncoder(out_dim=16, max_tokens=10, seed=3)
    assert isinstance(enc, TextEncoder)
    out = enc.encode(["pick up the red cup.", "open"])
    assert out.shape == (2, 10, 16) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert enc.tokens("pick up the red cup.") == ["pick", "up", "the", "red", "cup", "."]
    assert out[0, :6].abs().sum(dim=-1).min() > 0
    assert (out[0, 6:] == 0).all() and (out[1, 1:] == 0).all()


def test_when_same_text_encoded_twice_expect_identical_and_case_folded():
    enc = HashTextEncoder(32, 12)
    a, b = enc.encode(["Pick up the cup", "pick UP the cup"])
    assert torch.equal(a, b)
    assert torch.equal(a, enc.encode(["Pick up the cup"])[0])


def test_when_instructions_differ_expect_clearly_different_embeddings():
    enc = HashTextEncoder(64, 16)
    a, b, c = enc.encode(["pick up the red cup", "open the top drawer", "pick up the blue cup"])
    assert (a - b).norm() / a.norm() > 0.5
    # One word changed still moves that token's features completely.
    assert (a[3] - c[3]).norm() / a[3].norm() > 0.5
    assert torch.equal(a[:3], c[:3])


def test_when_word_repeats_expect_positions_told_apart_by_sinusoid():
    d = 10
    out = HashTextEncoder(d, 4).encode(["cup cup cup"])[0]
    for p in (1, 2):
        # The word vector cancels; what remains is the transformer position code's difference.
        code = [
            (math.sin if k % 2 == 0 else math.cos)(p / 10000 ** ((k - k % 2) / d))
            - (math.sin if k % 2 == 0 else math.cos)(0.0)
            for k in range(d)
        ]
        np.testing.assert_allclose(out[p] - out[0], code, atol=1e-5)


def test_when_text_exceeds_max_tokens_expect_truncation():
    enc = HashTextEncoder(8, 3)
    out = enc.encode(["one two three four five"])
    assert torch.equal(out, enc.encode(["one two three"]))


def test_when_seed_differs_expect_different_embeddings_and_name():
    a, b = HashTextEncoder(16, 4, seed=0), HashTextEncoder(16, 4, seed=1)
    assert a.name != b.name
    assert not torch.allclose(a.encode(["cup"]), b.encode(["cup"]))


# The module is loaded by file path so that the child skips the model package's __init__ (which
# imports the video model and diffusers): this test is about the encoder, and runs in seconds.
_ENCODE_IN_CHILD = """
import hashlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("text", sys.argv[1])
text = importlib.util.module_from_spec(spec)
spec.loader.exec_module(text)
out = text.HashTextEncoder(48, 20, seed=7).encode(["stack the green cups", "arrange the flower"])
sys.stdout.write(hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_when_encoded_in_two_processes_expect_identical_bytes():
    # Different hash seeds: Python's salted hash() must play no part. Run side by side to save time.
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _ENCODE_IN_CHILD, text_module.__file__],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            stdout=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "2")
    ]
    digests = [child.communicate(timeout=120)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    here = HashTextEncoder(48, 20, seed=7).encode(["stack the green cups", "arrange the flower"])
    assert digests[0] == digests[1] == hashlib.sha256(here.numpy().tobytes()).hexdigest()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"out_dim": 0, "max_tokens": 4}, "out_dim"),
        ({"out_dim": 4, "max_tokens": 2.5}, "max_tokens"),
        ({"out_dim": 4, "max_tokens": 4, "seed": -1}, "seed"),
    ],
)
def test_when_hash_settings_are_bad_expect_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HashTextEncoder(**kwargs)


def test_when_texts_is_a_bare_string_expect_value_error():
    with pytest.raises(ValueError, match="list of strings"):
        HashTextEncoder(4, 4).encode("pick up the cup")
    with pytest.raises(ValueError, match=r"texts\[1\] must be a string"):
        HashTextEncoder(4, 4).encode(["a", 3])


# ---------------------------------------------------------------- layer feature assembly


def test_when_assembling_layers_expect_embedding_dropped_and_each_layer_standardised():
    gen = torch.Generator().manual_seed(0)
    embedding = torch.full((2, 3, 5), float("nan"))  # must not reach the output
    layers = [torch.randn(2, 3, 5, generator=gen) * s + s for s in (1.0, 10.0, 0.1)]
    out = concat_normalized_layers([embedding, *layers])
    assert out.shape == (2, 3, 15) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    for k, layer in enumerate(layers):
        x = layer.double().numpy()
        expected = (x - x.mean(-1, keepdims=True)) / (x.std(-1, ddof=1, keepdims=True) + 1e-8)
        np.testing.assert_allclose(out[..., 5 * k : 5 * (k + 1)].numpy(), expected, atol=1e-5)


def test_when_assembling_bfloat16_states_expect_float32_features():
    states = [torch.randn(1, 2, 8).to(torch.bfloat16) for _ in range(3)]
    assert concat_normalized_layers(states).dtype == torch.float32


def test_when_only_embeddings_given_expect_value_error():
    with pytest.raises(ValueError, match="at least one layer"):
        concat_normalized_layers([torch.zeros(1, 2, 3)])


# ---------------------------------------------------------------- Cosmos-Reason on a tiny Qwen2.5-VL

TINY_WORDS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "[UNK]",
    *"system user pick up the red cup open drawer stack".split(),
    *COSMOS_SYSTEM_PROMPT.lower().replace(".", " .").split(),
]
TINY_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} "
    "{% for c in m['content'] %}{{ c['text'] }}{% endfor %} <|im_end|> {% endfor %}"
)


def qwen_config(hidden: int, layers: int, heads: int, vocab: int):
    from transformers import Qwen2_5_VLConfig

    head_dim = hidden // heads
    return Qwen2_5_VLConfig(
        text_config={
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2),
            "intermediate_size": 2 * hidden,
            "vocab_size": vocab,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            # Qwen2.5-VL splits each head's rotary frequencies over (time, height, width).
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [
                    head_dim // 4,
                    head_dim // 8,
                    head_dim // 2 - head_dim // 4 - head_dim // 8,
                ],
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": hidden,
        },
    )


@pytest.fixture(scope="module")
def tiny_cosmos(tmp_path_factory) -> Path:
    """A randomly initialised 3-layer, 32-wide Qwen2.5-VL and a word-level tokenizer, built offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_cosmos")
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(qwen_config(32, 3, 4, 64)).save_pretrained(folder)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(TINY_WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|endoftext|>", unk_token="[UNK]", chat_template=TINY_TEMPLATE
    ).save_pretrained(folder)
    return folder


def reference_features(folder: Path, texts: list[str], max_tokens: int) -> torch.Tensor:
    """Cosmos-Predict2.5's recipe written out independently: the full vision-language model (not
    just its text part) on the padded chat ids, hidden states 1..L, each standardised, concatenated."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        folder, local_files_only=True, dtype=torch.float32
    )
    ids = []
    for t in texts:
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": COSMOS_SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "text", "text": t}]},
        ]
        encoded = tokenizer.apply_chat_template(
            conversation,
            tokenize=True,
            max_length=max_tokens,
            truncation=True,
            padding="max_length",
            return_dict=True,
        )
        ids.append(torch.tensor(encoded["input_ids"]))
    with torch.no_grad():
        hidden = model(torch.stack(ids), output_hidden_states=True).hidden_states
    parts = [(h - h.mean(-1, keepdim=True)) / (h.std(-1, keepdim=True) + 1e-8) for h in hidden[1:]]
    return torch.cat(parts, dim=-1)


def test_when_tiny_model_encodes_expect_layers_times_hidden_features(tiny_cosmos):
    enc = CosmosReasonTextEncoder(tiny_cosmos, max_tokens=40, dtype=torch.float32)
    assert (enc.num_layers, enc.hidden_size, enc.out_dim) == (3, 32, 96)
    out = enc.encode(["pick up the red cup", "open the drawer"])
    assert out.shape == (2, 40, 96) and out.dtype == torch.float32
    chunks = out.view(2, 40, 3, 32)
    torch.testing.assert_close(chunks.mean(-1), torch.zeros(2, 40, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(chunks.std(-1), torch.ones(2, 40, 3), atol=1e-4, rtol=0)
    assert not torch.allclose(out[0], out[1])


def test_when_tiny_model_encodes_expect_cosmos_predict_recipe(tiny_cosmos):
    texts = ["pick up the red cup", "stack the cup"]
    enc = CosmosReasonTextEncoder(tiny_cosmos, max_tokens=40, dtype=torch.float32)
    torch.testing.assert_close(
        enc.encode(texts), reference_features(tiny_cosmos, texts, 40), atol=1e-4, rtol=1e-4
    )


def test_when_instruction_is_long_expect_ids_truncated_and_padded_to_max_tokens(tiny_cosmos):
    enc = CosmosReasonTextEncoder(tiny_cosmos, max_tokens=24, dtype=torch.float32)
    ids = enc.token_ids(["pick up the red cup " * 10, "open"])
    assert ids.shape == (2, 24)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(TINY_WORDS))}
    # System turn (17 tokens) then the user turn (4 for "open"), then padding.
    system = [
        "<|im_start|>",
        "system",
        *COSMOS_SYSTEM_PROMPT.lower().replace(".", " .").split(),
        "<|im_end|>",
    ]
    user = ["<|im_start|>", "user", "open", "<|im_end|>"]
    expected_short = [vocab[w] for w in system + user] + [vocab["<|endoftext|>"]] * 3
    assert ids[1].tolist() == expected_short
    assert (ids[0] != vocab["<|endoftext|>"]).all()
    assert enc.encode(["pick up the red cup " * 10]).shape == (1, 24, 96)


def test_when_config_has_7b_dims_expect_100352_features_without_loading_weights(tmp_path):
    # Only config.json: construction must not touch weights (none exist here).
    qwen_config(3584, 28, 28, 152064).save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))
    enc = CosmosReasonTextEncoder(tmp_path)
    assert enc.out_dim == 100352 == 28 * 3584 and enc.max_tokens == 512
    assert "max_tokens=512" in enc.name and "bfloat16" in enc.name
    with pytest.raises(FileNotFoundError, match="weights in .* never downloads weights"):
        enc.encode(["pick up the cup"])


def test_when_folder_is_missing_expect_never_downloads_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads weights: point text.path at a local copy"):
        CosmosReasonTextEncoder(tmp_path / "Cosmos-Reason1-7B")
    with pytest.raises(FileNotFoundError, match="config.json"):
        CosmosReasonTextEncoder(tmp_path)


def test_when_folder_holds_another_model_expect_value_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type is 'bert'"):
        CosmosReasonTextEncoder(tmp_path)


# ---------------------------------------------------------------- cache


class CountingEncoder:
    """A hash encoder that records every batch it is asked to encode."""

    def __init__(self, seed: int = 0, max_tokens: int = 6, out_dim: int = 8):
        self.inner = HashTextEncoder(out_dim, max_tokens, seed)
        self.out_dim, self.max_tokens, self.name = out_dim, max_tokens, self.inner.name
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


class FailingEncoder(CountingEncoder):
    def encode(self, texts):
        raise AssertionError(f"should have been served from the cache: {texts}")


def test_when_batch_mixes_cached_and_new_texts_expect_only_misses_encoded():
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner)
    assert isinstance(enc, TextEncoder) and enc.name == inner.name
    first = enc.encode(["a cup", "a drawer"])
    out = enc.encode(["a drawer", "a flower", "a cup", "a flower"])
    assert inner.calls == [["a cup", "a drawer"], ["a flower"]]
    assert (enc.hits, enc.misses, enc.disk_hits) == (2, 3, 0)
    assert torch.equal(out, inner.inner.encode(["a drawer", "a flower", "a cup", "a flower"]))
    assert torch.equal(out[2], first[0])


def test_when_caller_edits_result_in_place_expect_cache_unharmed():
    enc = CachedTextEncoder(CountingEncoder())
    enc.encode(["a cup"]).zero_()
    assert enc.encode(["a cup"]).abs().sum() > 0


def test_when_memory_is_full_expect_least_recently_used_evicted():
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner, max_entries=2)
    enc.encode(["a"])
    enc.encode(["b"])
    enc.encode(["a"])  # now "b" is the least recently used
    enc.encode(["c"])
    enc.encode(["a"])
    enc.encode(["b"])
    assert inner.calls == [["a"], ["b"], ["c"], ["b"]]


def test_when_empty_batch_expect_empty_tensor():
    assert CachedTextEncoder(CountingEncoder()).encode([]).shape == (0, 6, 8)


def test_when_new_instance_reads_disk_cache_expect_no_encoding(tmp_path):
    first = CachedTextEncoder(CountingEncoder(), cache_dir=tmp_path)
    expected = first.encode(["pick up the cup", "open the drawer"])
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert not list(tmp_path.glob("*.tmp"))
    second = CachedTextEncoder(FailingEncoder(), cache_dir=tmp_path)
    assert torch.equal(second.encode(["open the drawer", "pick up the cup"]), expected.flip(0))
    assert (second.hits, second.disk_hits, second.misses) == (2, 2, 0)


def test_when_encoder_differs_expect_no_shared_disk_entries(tmp_path):
    CachedTextEncoder(CountingEncoder(seed=0), cache_dir=tmp_path).encode(["a cup"])
    other = CountingEncoder(seed=1)
    CachedTextEncoder(other, cache_dir=tmp_path).encode(["a cup"])
    assert other.calls == [["a cup"]]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage", "other_key"])
def test_when_disk_entry_is_damaged_expect_recomputed_and_rewritten(tmp_path, damage, caplog):
    texts = ["pick up the cup", "open the drawer"]
    writer = CachedTextEncoder(CountingEncoder(), cache_dir=tmp_path)
    expected = writer.encode(texts)
    path = writer.disk_path(texts[0])
    data = path.read_bytes()
    if damage == "truncate":  # what a crash mid-write would leave without the atomic rename
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":  # silent corruption inside the tensor bytes
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    else:
        path.write_bytes(writer.disk_path(texts[1]).read_bytes())
    inner = CountingEncoder()
    reader = CachedTextEncoder(inner, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger=text_module.__name__):
        assert torch.equal(reader.encode(texts), expected)
    assert inner.calls == [[texts[0]]] and (reader.misses, reader.disk_hits) == (1, 1)
    assert "recomputing" in caplog.text
    third = CachedTextEncoder(FailingEncoder(), cache_dir=tmp_path)
    assert torch.equal(third.encode(texts), expected)


def test_when_disk_write_fails_expect_result_anyway_and_no_files_left(tmp_path, monkeypatch, caplog):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(text_module.os, "replace", refuse)
    enc = CachedTextEncoder(CountingEncoder(), cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger=text_module.__name__):
        out = enc.encode(["a cup"])
    assert torch.equal(out, CountingEncoder().inner.encode(["a cup"]))
    assert "disk full" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_when_wrapped_encoder_returns_wrong_shape_expect_runtime_error():
    class Broken(CountingEncoder):
        def encode(self, texts):
            return torch.zeros(len(texts), 5, 8)

    with pytest.raises(RuntimeError, match=r"returned shape \(1, 5, 8\), expected \(1, 6, 8\)"):
        CachedTextEncoder(Broken()).encode(["a"])


# ---------------------------------------------------------------- building from a preset


def test_when_preset_asks_for_hash_expect_cached_hash_encoder(tmp_path):
    enc = build_text_encoder(
        {
            "kind": "hash",
            "out_dim": 24,
            "max_tokens": 7,
            "seed": 2,
            "cache_dir": str(tmp_path),
            "cache_entries": 3,
        }
    )
    assert isinstance(enc, CachedTextEncoder) and isinstance(enc.encoder, HashTextEncoder)
    assert (enc.out_dim, enc.max_tokens, enc.encoder.seed, enc.max_entries) == (24, 7, 2, 3)
    assert enc.cache_dir == tmp_path
    assert torch.equal(enc.encode(["a cup"]), HashTextEncoder(24, 7, 2).encode(["a cup"]))


def test_when_preset_asks_for_cosmos_expect_cached_lazy_cosmos_encoder(tmp_path):
    qwen_config(3584, 28, 28, 152064).save_pretrained(tmp_path)
    enc = build_text_encoder({"kind": "cosmos_reason", "path": str(tmp_path), "out_dim": 100352})
    assert isinstance(enc.encoder, CosmosReasonTextEncoder)
    assert (enc.out_dim, enc.max_tokens, enc.encoder.dtype) == (100352, 512, torch.bfloat16)


@pytest.mark.parametrize(
    "cfg,error,match",
    [
        (
            {"kind": "clip", "out_dim": 4},
            ValueError,
            "unknown text encoder kind 'clip'; known kinds: hash, cosmos_reason",
        ),
        ({"out_dim": 4}, ValueError, "kind None"),
        ({"kind": "hash", "out_dim": 4}, ValueError, r"missing field\(s\) \['max_tokens'\]"),
        (
            {"kind": "hash", "out_dim": 4, "max_tokens": 4, "sed": 1},
            ValueError,
            r"unknown field\(s\) \['sed'\]",
        ),
        (
            {"kind": "cosmos_reason", "path": "/nonexistent/Cosmos-Reason1-7B"},
            FileNotFoundError,
            "never downloads",
        ),
        ({"kind": "cosmos_reason"}, ValueError, r"missing field\(s\) \['path'\]"),
        ({"kind": "hash", "out_dim": 4, "max_tokens": 4, "cache_entries": 0}, ValueError, "max_entries"),
        ("hash", ValueError, "mapping"),
    ],
)
def test_when_preset_is_bad_expect_error_naming_it(cfg, error, match):
    with pytest.raises(error, match=match):
        build_text_encoder(cfg)


def test_when_cosmos_preset_disagrees_with_model_expect_value_error(tmp_path):
    qwen_config(64, 4, 4, 100).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"text.out_dim is 100352 but .* 4 layers x 64 = 256"):
        build_text_encoder({"kind": "cosmos_reason", "path": str(tmp_path), "out_dim": 100352})
    with pytest.raises(ValueError, match="text.dtype 'fp8' unknown"):
        build_text_encoder({"kind": "cosmos_reason", "path": str(tmp_path), "dtype": "fp8"})
