"""ONNX export of the two boundaries, and onnxruntime execution of them.

trunk.onnx     VideoTrunk: cond_latent [B, C, 1, h, w], future [B, C, T-1, h, w],
               context [B, L, text_embed_dim] -> tokens [B, N, D] (video DiT up to the
               extraction block; RoPE and timestep embeddings fold to constants at these shapes)
denoiser.onnx  ActionDenoiser: actions [B, H, A], tau [B] (float32), state_token [B, 1, W],
               keys, values [n_cross, B, heads, N, head_dim] -> velocity [B, H, A] (one Euler step)
All shapes are static (batch 1 for a robot): TensorRT and onnxruntime then plan once.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import torch

from dit4dit_policy.model import ActionDenoiser, DiT4DiT, VideoTrunk
from dit4dit_policy.runtime.artifacts import GraphSpec, TensorSpec, file_sha256

TRUNK_INPUTS = ("cond_latent", "future", "context")
DENOISER_INPUTS = ("actions", "tau", "state_token", "keys", "values")


def boundary_inputs(model: DiT4DiT, batch_size: int = 1) -> dict[str, dict[str, torch.Tensor]]:
    """Example inputs of the two graphs, with the shapes and dtypes FastInference feeds them.
    The denoiser's keys/values and state token come from the model itself, so they are real."""
    cfg = model.cfg
    dev, dtype = model.video.latents_mean.device, model.video.latents_mean.dtype
    g = torch.Generator(device=dev).manual_seed(0)
    c, t, h, w = cfg.latent_shape
    b = batch_size

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g, device=dev, dtype=torch.float32).to(dtype)

    trunk = dict(
        zip(
            TRUNK_INPUTS,
            (randn(b, c, 1, h, w), randn(b, c, t - 1, h, w), randn(b, cfg.text.max_tokens, cfg.video.text_embed_dim)),
            strict=True,
        )
    )
    with torch.no_grad():
        tokens = VideoTrunk(model.video).eval()(*trunk.values())
        keys, values = model.action.project_kv(tokens)
        state_token = model.action.encode_state(randn(b, cfg.state.dim))
    # float32 whatever the model dtype, as FastInference's tau schedule.
    tau = torch.full((b,), 0.5, device=dev, dtype=torch.float32)
    denoiser = dict(
        zip(
            DENOISER_INPUTS, (randn(b, cfg.action.horizon, cfg.action.dim), tau, state_token, keys, values), strict=True
        )
    )
    return {"trunk": trunk, "denoiser": denoiser}


@contextmanager
def _shown_on_failure(log: io.StringIO) -> Iterator[None]:
    try:
        yield
    except BaseException:
        sys.stderr.write(log.getvalue())
        raise


def export_onnx(model: DiT4DiT, folder: Path, batch_size: int = 1) -> dict[str, GraphSpec]:
    """Write trunk.onnx and denoiser.onnx into `folder` (weights of large models go to an
    external-data file beside each); returns their specs for the manifest."""
    modules = {"trunk": VideoTrunk(model.video).eval(), "denoiser": ActionDenoiser(model.action).eval()}
    outputs = {"trunk": "tokens", "denoiser": "velocity"}
    specs = {}
    for name, inputs in boundary_inputs(model, batch_size).items():
        module, path = modules[name], folder / f"{name}.onnx"
        # The exporter prints the whole FX graph and per-op notes (hundreds of lines): keep them
        # out of the terminal, and show them only if the export fails.
        log = io.StringIO()
        with torch.no_grad(), _shown_on_failure(log), redirect_stdout(log), redirect_stderr(log):
            expected = module(*inputs.values())
            torch.onnx.export(
                module,
                tuple(inputs.values()),
                str(path),
                input_names=list(inputs),
                output_names=[outputs[name]],
                dynamo=True,
                optimize=True,
                external_data=True,
                verbose=False,
            )
        specs[name] = GraphSpec(
            file=path.name,
            inputs=tuple(_spec(n, t) for n, t in inputs.items()),
            outputs=(_spec(outputs[name], expected),),
            sha256={f: file_sha256(folder / f) for f in (path.name, *external_data_files(path))},
        )
    return specs


def external_data_files(path: Path) -> list[str]:
    """The files, relative to its folder, that the ONNX graph at `path` keeps its weights in."""
    import onnx  # only exports need it

    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted(
        {
            entry.value
            for tensor in graph.initializer
            if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )


def _spec(name: str, t: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch."))


class OrtGraph:
    """One exported graph in an onnxruntime session, called like the torch module it replaces.
    CUDA execution provider when the device is CUDA and onnxruntime has it; CPU otherwise."""

    def __init__(self, folder: Path, spec: GraphSpec, device: torch.device):
        import onnxruntime as ort

        self.spec, self.device = spec, device
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        # The same thread budget as the torch backends, so that the comparison is fair.
        options.intra_op_num_threads = torch.get_num_threads()
        # Idle onnxruntime workers otherwise spin, taking the cores from the torch stages that
        # follow (K/V projection) and from the control loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / spec.file), options, providers=providers)
        got = [(i.name, tuple(i.shape)) for i in self.session.get_inputs()]
        want = [(t.name, t.shape) for t in spec.inputs]
        if got != want:
            raise ValueError(f"{folder / spec.file} has inputs {got}, but its manifest says {want}")
        self.output_names = [t.name for t in spec.outputs]

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        feeds = {}
        for t_spec, t in zip(self.spec.inputs, tensors, strict=True):
            if tuple(t.shape) != t_spec.shape:
                raise ValueError(
                    f"{self.spec.file}: input {t_spec.name} must be {list(t_spec.shape)}, got {list(t.shape)}"
                )
            feeds[t_spec.name] = t.detach().cpu().numpy()
        (out,) = self.session.run(self.output_names, feeds)
        return torch.from_numpy(out).to(self.device)
