"""Loading Cosmos-Predict2.5 weights from a diffusers-format folder, shown on a tiny folder laid out
like the released one (in_channels = z_dim + 1 with concat_padding_mask = True, sharded weights)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel
from safetensors.torch import load_file, save_file

from dit4dit_policy.model import build_model, load_preset
from dit4dit_policy.model.video import VideoBackbone


@pytest.fixture(scope="module")
def cosmos_folder(tmp_path_factory):
    cfg = load_preset("tiny")
    released = {**cfg.transformer_kwargs(), "in_channels": cfg.vae.z_dim + 1, "concat_padding_mask": True}
    torch.manual_seed(3)
    transformer, vae = CosmosTransformer3DModel(**released), AutoencoderKLWan(**cfg.vae_kwargs())
    root = tmp_path_factory.mktemp("cosmos")
    transformer.save_pretrained(root / "transformer", max_shard_size="100KB")
    vae.save_pretrained(root / "vae")
    return root, transformer.state_dict(), vae.state_dict()


def test_when_released_layout_loaded_expect_every_weight_unchanged(cosmos_folder):
    root, transformer_sd, vae_sd = cosmos_folder
    assert len(list((root / "transformer").glob("*.safetensors"))) > 1  # sharded, like the 2B release
    model = build_model(load_preset("tiny"), cosmos_path=root)
    loaded = model.video.transformer.state_dict()
    assert loaded.keys() == transformer_sd.keys()
    assert all(torch.equal(loaded[k], transformer_sd[k]) for k in loaded)
    assert all(torch.equal(model.video.vae.state_dict()[k], v) for k, v in vae_sd.items())
    assert model.video.transformer.config.concat_padding_mask is False
    assert model.video.latents_mean.flatten().tolist() == pytest.approx(model.video.vae.config.latents_mean)


def test_when_folder_is_another_size_expect_every_mismatch_named(cosmos_folder):
    root, _, _ = cosmos_folder
    with pytest.raises(ValueError, match=r"num_layers: preset 8, folder 3.*text_embed_dim: preset 256, folder 32"):
        VideoBackbone.from_cosmos(load_preset("small"), root)


def test_when_folder_input_channels_differ_expect_refusal(cosmos_folder, tmp_path):
    root, _, _ = cosmos_folder
    copy = tmp_path / "cosmos"
    for sub in ("transformer", "vae"):
        (copy / sub).mkdir(parents=True)
        for f in (root / sub).iterdir():
            (copy / sub / f.name).write_bytes(f.read_bytes())
    config = json.loads((copy / "transformer" / "config.json").read_text())
    config["concat_padding_mask"] = False
    (copy / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="takes 17 input channels"):
        VideoBackbone.from_cosmos(load_preset("tiny"), copy)


def test_when_folder_is_not_diffusers_format_expect_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no transformer/config.json"):
        VideoBackbone.from_cosmos(load_preset("tiny"), tmp_path)


def edited_copy(root, dest, sub, edit):
    """A copy of the folder whose `sub` weights, merged into one file, went through `edit(dict)`."""
    shutil.copytree(root, dest)
    weights = {}
    for f in [*(dest / sub).glob("*.safetensors"), *(dest / sub).glob("*.index.json")]:
        if f.suffix == ".safetensors":
            weights.update(load_file(f))
        f.unlink()
    edit(weights)
    save_file(weights, dest / sub / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    return dest


@pytest.mark.parametrize(
    ("sub", "edit", "message"),
    [
        ("transformer", lambda w: w.pop("proj_out.weight"), r"1 missing: proj_out\.weight$"),
        ("vae", lambda w: w.update(extra=torch.zeros(2)), "1 unexpected: extra$"),
        (
            "transformer",
            lambda w: w.update({"proj_out.weight": torch.zeros(3, 3)}),
            r"1 shape-mismatched: proj_out\.weight: folder \[3, 3\] vs model \[64, 32\]$",
        ),
    ],
    ids=["missing", "unexpected", "mismatched"],
)
def test_when_folder_weights_do_not_fit_expect_folder_and_weights_named(cosmos_folder, tmp_path, sub, edit, message):
    root, _, _ = cosmos_folder
    copy = edited_copy(root, tmp_path / "cosmos", sub, edit)
    expected = f"^{re.escape(str(copy / sub))}: the .* weights do not fit the preset: {message}"
    with pytest.raises(ValueError, match=expected):
        build_model(load_preset("tiny"), cosmos_path=copy)
