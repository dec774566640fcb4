"""TensorRT engines from the exported ONNX graphs, and their execution on CUDA tensors.

The network is strongly typed: every tensor keeps the type the ONNX graph gives it, so the
precision is chosen at ONNX export (the model cast to fp16/bf16 before exporting), not by builder
flags. Shapes are static, so no optimisation profile is needed. An engine is tied to the GPU
architecture and TensorRT version it was built with (the manifest records the version).

The checks on an engine and its execution context (`check_engine_io`, `set_address`, `execute`)
take any object with TensorRT's method names, so that they are tested without TensorRT or a GPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dit4dit_policy.runtime.artifacts import GraphSpec

_WORKSPACE_BYTES = 8 << 30  # the builder's scratch memory for tactic selection
# The dtypes an export's graphs have (torch names) as the names of TensorRT's DataType members.
_TRT_DTYPES = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16"}


def import_tensorrt():
    """The tensorrt module, or an error saying what to install."""
    try:
        import tensorrt
    except ImportError as e:
        raise RuntimeError(
            "TensorRT is not installed: `pip install tensorrt` (NVIDIA GPU with CUDA required); "
            "the onnx format and backend work without it"
        ) from e
    return tensorrt


def build_engine(onnx_path: Path, engine_path: Path) -> None:
    """Parse `onnx_path` into a strongly typed network and write its serialized engine."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    # parse_from_file, not parse(bytes): it finds the external-data file next to the graph.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE_BYTES)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path.write_bytes(bytes(serialized))


class TrtGraph:
    """One engine, called like the torch module it replaces, on CUDA tensors of the current stream.

    The output buffer is allocated once and reused by every call: FastInference consumes each
    output (tokens -> K/V, velocity -> its action buffer) before the next call."""

    def __init__(self, folder: Path, spec: GraphSpec, device: torch.device):
        if device.type != "cuda":
            raise ValueError(f"TensorRT engines run on a CUDA device, got device {device}")
        trt = import_tensorrt()
        self.spec, self.device = spec, device
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        path = folder / spec.file
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT could not load {path}: engines only load on the GPU architecture and TensorRT "
                "version they were built with; re-export with --force on this machine"
            )
        check_engine_io(self.engine, spec, path)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
        self.outputs = [torch.empty(t.shape, dtype=getattr(torch, t.dtype), device=device) for t in spec.outputs]
        for t, buffer in zip(spec.outputs, self.outputs, strict=True):
            set_address(self.context, t.name, buffer.data_ptr(), spec.file)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = []  # kept alive until the stream has used them
        for t_spec, t in zip(self.spec.inputs, tensors, strict=True):
            if tuple(t.shape) != t_spec.shape:
                raise ValueError(
                    f"{self.spec.file}: input {t_spec.name} must be {list(t_spec.shape)}, got {list(t.shape)}"
                )
            t = t.to(self.device, getattr(torch, t_spec.dtype)).contiguous()
            inputs.append(t)
            set_address(self.context, t_spec.name, t.data_ptr(), self.spec.file)
        stream = torch.cuda.current_stream(self.device)
        execute(self.context, stream.cuda_stream, self.spec.file)
        # The inputs may be temporaries freed when this returns; the caching allocator would
        # hand their memory out again before the engine has read it unless told of the stream.
        for t in inputs:
            t.record_stream(stream)
        return self.outputs[0]


def check_engine_io(engine, spec: GraphSpec, source: Path) -> None:
    """Refuse an engine (an ICudaEngine) whose I/O tensors are not the manifest's: the same names,
    each with the same input/output mode, shape and dtype. The error names the first difference."""
    want = {t.name: ("INPUT", t.shape, _TRT_DTYPES.get(t.dtype, t.dtype)) for t in spec.inputs}
    want |= {t.name: ("OUTPUT", t.shape, _TRT_DTYPES.get(t.dtype, t.dtype)) for t in spec.outputs}
    found = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        got = (
            engine.get_tensor_mode(name).name,
            tuple(engine.get_tensor_shape(name)),
            engine.get_tensor_dtype(name).name,
        )
        if name not in want:
            raise ValueError(f"{source}: engine has {got[0].lower()} tensor {name!r}, which the manifest does not list")
        for what, engine_value, manifest_value in zip(("mode", "shape", "dtype"), got, want[name], strict=True):
            if engine_value != manifest_value:
                raise ValueError(
                    f"{source}: tensor {name!r} has {what} {engine_value} in the engine, "
                    f"{manifest_value} in the manifest"
                )
        found.append(name)
    missing = [name for name in want if name not in found]
    if missing:
        raise ValueError(f"{source}: engine lacks tensor(s) {missing}, which the manifest lists")


def set_address(context, name: str, address: int, source: str) -> None:
    """`context.set_tensor_address`, which reports a refusal (unknown name, misaligned buffer) by
    returning False: without this check the engine would read or write a stale buffer."""
    if not context.set_tensor_address(name, address):
        raise RuntimeError(f"TensorRT refused address {address:#x} for tensor {name!r} of {source} (see its log)")


def execute(context, stream: int, source: str) -> None:
    """`context.execute_async_v3` on the CUDA stream handle `stream`; False means nothing was enqueued."""
    if not context.execute_async_v3(stream):
        raise RuntimeError(f"TensorRT failed to enqueue {source} (see its log)")
