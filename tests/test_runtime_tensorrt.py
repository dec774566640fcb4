"""TensorRT: what can be checked without it here, and parity with torch where it and CUDA exist.

TensorRT is not installed on the machines this project is tested on: the checks TrtGraph makes on an
engine and its execution context are tested against fakes that answer to the TensorRT 10 Python API's
method names (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`, `get_tensor_shape`,
`get_tensor_dtype`, `set_tensor_address`, `execute_async_v3`).
"""

from __future__ import annotations

import enum
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dit4dit_policy.model import ChunkNoise, load_checkpoint
from dit4dit_policy.runtime import export, export_dir, open_runtime
from dit4dit_policy.runtime import tensorrt_backend as trt_backend
from dit4dit_policy.runtime.artifacts import GraphSpec, TensorSpec
from dit4dit_policy.runtime.bench import random_checkpoint
from dit4dit_policy.runtime.onnx_backend import export_onnx
from dit4dit_policy.runtime.tensorrt_backend import TrtGraph, check_engine_io, execute, set_address

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAVE_CUDA = torch.cuda.is_available()

# The members of tensorrt.TensorIOMode and tensorrt.DataType the checks meet, by their real names.
TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
DataType = enum.Enum("DataType", "FLOAT HALF BF16")

# The tiny preset's denoiser at fp16, as its manifest lists it.
DENOISER = GraphSpec(
    file="denoiser.engine",
    inputs=(
        TensorSpec("actions", (1, 8, 8), "float16"),
        TensorSpec("tau", (1,), "float32"),
        TensorSpec("state_token", (1, 1, 64), "float16"),
        TensorSpec("keys", (2, 1, 4, 32, 16), "float16"),
        TensorSpec("values", (2, 1, 4, 32, 16), "float16"),
    ),
    outputs=(TensorSpec("velocity", (1, 8, 8), "float16"),),
    sha256={"denoiser.engine": "0" * 64},
)
# The DataType a strongly typed engine gives each ONNX/torch type.
TRT_TYPE = {"float16": DataType.HALF, "float32": DataType.FLOAT, "bfloat16": DataType.BF16}


class FakeEngine:
    """The I/O part of tensorrt.ICudaEngine: tensors as (name, mode, shape, dtype) in engine order."""

    def __init__(self, tensors: list[tuple[str, TensorIOMode, tuple[int, ...], DataType]], context=None):
        self.tensors = {name: (mode, shape, dtype) for name, mode, shape, dtype in tensors}
        self.context = context

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensors[name][0]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.tensors[name][2]

    def create_execution_context(self):
        return self.context


class FakeContext:
    """tensorrt.IExecutionContext's two calls that report failure by returning False."""

    def __init__(self, accept: bool = True):
        self.accept = accept
        self.addresses: dict[str, int] = {}
        self.enqueued: list[int] = []

    def set_tensor_address(self, name: str, address: int) -> bool:
        if self.accept:
            self.addresses[name] = address
        return self.accept

    def execute_async_v3(self, stream_handle: int) -> bool:
        if self.accept:
            self.enqueued.append(stream_handle)
        return self.accept


def engine_tensors(spec: GraphSpec) -> list[tuple[str, TensorIOMode, tuple[int, ...], DataType]]:
    """What an engine built from `spec`'s graph reports: inputs, then outputs."""
    return [(t.name, TensorIOMode.INPUT, t.shape, TRT_TYPE[t.dtype]) for t in spec.inputs] + [
        (t.name, TensorIOMode.OUTPUT, t.shape, TRT_TYPE[t.dtype]) for t in spec.outputs
    ]


def test_when_engine_io_matches_manifest_expect_it_accepted():
    check_engine_io(FakeEngine(engine_tensors(DENOISER)), DENOISER, Path("denoiser.engine"))


def test_when_engine_lists_its_io_in_another_order_expect_it_accepted():
    # TensorRT addresses tensors by name: the order of the engine's I/O is not the manifest's business.
    check_engine_io(FakeEngine(engine_tensors(DENOISER)[::-1]), DENOISER, Path("denoiser.engine"))


def _changed(index: int, **change) -> list:
    tensors = engine_tensors(DENOISER)
    name, mode, shape, dtype = tensors[index]
    tensors[index] = (
        change.get("name", name),
        change.get("mode", mode),
        change.get("shape", shape),
        change.get("dtype", dtype),
    )
    return tensors


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (_changed(5, dtype=DataType.FLOAT), "tensor 'velocity' has dtype FLOAT in the engine, HALF in the manifest"),
        (_changed(1, dtype=DataType.HALF), "tensor 'tau' has dtype HALF in the engine, FLOAT in the manifest"),
        (_changed(0, shape=(1, 16, 8)), r"tensor 'actions' has shape \(1, 16, 8\) in the engine, \(1, 8, 8\) in"),
        (_changed(2, mode=TensorIOMode.OUTPUT), "tensor 'state_token' has mode OUTPUT in the engine, INPUT in"),
        (_changed(5, name="noise"), "engine has output tensor 'noise', which the manifest does not list"),
        (engine_tensors(DENOISER)[:4] + engine_tensors(DENOISER)[5:], r"engine lacks tensor\(s\) \['values'\]"),
        # Two differences: the error names the first, in the engine's order.
        (_changed(3, shape=(2, 1, 4, 8, 16))[:5] + _changed(5, dtype=DataType.BF16)[5:], "tensor 'keys' has shape"),
    ],
)
def test_when_engine_io_differs_from_manifest_expect_error_naming_the_first_difference(tensors, message):
    with pytest.raises(ValueError, match=message) as error:
        check_engine_io(FakeEngine(tensors), DENOISER, Path("export/denoiser.engine"))
    assert str(error.value).startswith("export/denoiser.engine: ")


def test_when_context_accepts_addresses_and_enqueue_expect_them_passed_on():
    context = FakeContext()
    set_address(context, "actions", 0x7F0000000100, "denoiser.engine")
    execute(context, 1234, "denoiser.engine")
    assert context.addresses == {"actions": 0x7F0000000100} and context.enqueued == [1234]


def test_when_context_refuses_an_address_expect_error_naming_tensor_and_engine():
    with pytest.raises(RuntimeError, match="refused address 0x7f0000000101 for tensor 'actions' of denoiser.engine"):
        set_address(FakeContext(accept=False), "actions", 0x7F0000000101, "denoiser.engine")


def test_when_enqueue_fails_expect_error_naming_the_engine():
    with pytest.raises(RuntimeError, match="TensorRT failed to enqueue denoiser.engine"):
        execute(FakeContext(accept=False), 1234, "denoiser.engine")


@pytest.fixture
def engine_file(tmp_path):
    (tmp_path / DENOISER.file).write_bytes(b"serialized engine")
    return tmp_path


class FakeLogger:
    WARNING = 2

    def __init__(self, severity: int):
        self.severity = severity


def with_engine(monkeypatch, engine: FakeEngine | None) -> None:
    """TrtGraph's tensorrt module replaced by one whose Runtime deserializes any file to `engine`."""
    runtime = SimpleNamespace(deserialize_cuda_engine=lambda data: engine)
    fake = SimpleNamespace(Logger=FakeLogger, Runtime=lambda logger: runtime)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake)


@pytest.mark.parametrize(
    ("engine", "error", "message"),
    [
        (None, RuntimeError, "could not load .*denoiser.engine: engines only load on the GPU architecture"),
        (FakeEngine(_changed(5, dtype=DataType.FLOAT)), ValueError, "tensor 'velocity' has dtype FLOAT"),
        (FakeEngine(engine_tensors(DENOISER), context=None), RuntimeError, "could not create an execution context"),
    ],
)
def test_when_trt_graph_loads_a_bad_engine_expect_refusal_before_any_gpu_work(
    monkeypatch, engine_file, engine, error, message
):
    # The checks come before TrtGraph allocates its CUDA outputs, so they run on this CPU-only machine.
    with_engine(monkeypatch, engine)
    with pytest.raises(error, match=message):
        TrtGraph(engine_file, DENOISER, torch.device("cuda"))


@pytest.mark.slow
@pytest.mark.usefixtures("torch_one_thread")
def test_when_bf16_graphs_are_traced_for_tensorrt_expect_bf16_onnx_io_that_passes_the_engine_check(tmp_path):
    # The CPU half of `dit4dit export --format tensorrt --precision bf16`: the ONNX graphs that the
    # strongly typed engine is built from, whose I/O types the engine keeps. (Building and running
    # the engine needs TensorRT and a GPU; onnxruntime has no CPU kernels for bf16 graphs.)
    import onnx

    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    model, _ = load_checkpoint(checkpoint)
    onnx_types = {onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.FLOAT: "float32"}
    for spec in export_onnx(model.to(torch.bfloat16), tmp_path).values():
        graph = onnx.load(str(tmp_path / spec.file), load_external_data=False).graph
        graph_io = [
            (v.name, tuple(d.dim_value for d in v.type.tensor_type.shape.dim), onnx_types[v.type.tensor_type.elem_type])
            for v in (*graph.input, *graph.output)
        ]
        assert graph_io == [(t.name, t.shape, t.dtype) for t in (*spec.inputs, *spec.outputs)]
        assert {t.dtype for t in (*spec.inputs, *spec.outputs) if t.name != "tau"} == {"bfloat16"}
        engine = FakeEngine(
            [
                (name, TensorIOMode.INPUT if i < len(graph.input) else TensorIOMode.OUTPUT, shape, TRT_TYPE[dtype])
                for i, (name, shape, dtype) in enumerate(graph_io)
            ]
        )
        check_engine_io(engine, spec, tmp_path / spec.file)


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed, so its absence cannot be tested")
def test_when_tensorrt_is_absent_expect_export_to_say_what_to_install(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    with pytest.raises(RuntimeError, match="TensorRT is not installed: `pip install tensorrt`"):
        export(checkpoint, "tensorrt", "fp16")
    assert not (checkpoint / "export").exists()  # refused before any work


def test_when_engine_device_is_cpu_expect_error_naming_it():
    with pytest.raises(ValueError, match="CUDA device, got device cpu"):
        TrtGraph(Path("."), DENOISER, torch.device("cpu"))


def test_when_tensorrt_export_missing_expect_error_naming_the_folder(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    with pytest.raises(FileNotFoundError, match="tensorrt-bf16"):
        open_runtime("tensorrt", checkpoint, device="cpu", precision="bf16")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(
    not (HAVE_TENSORRT and HAVE_CUDA), reason="needs tensorrt and a CUDA GPU (neither on the test machines)"
)
def test_when_tensorrt_serves_tiny_expect_torch_eager_actions(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    assert export(checkpoint, "tensorrt", "fp32") == export_dir(checkpoint, "tensorrt", "fp32")
    eager = open_runtime("torch", checkpoint, device="cuda")
    engine = open_runtime("tensorrt", checkpoint, device="cuda", precision="fp32")
    g = torch.Generator().manual_seed(0)
    s = eager.cfg.observation.image_size
    frame, q = torch.rand(3, s, s, generator=g) * 2 - 1, np.zeros(eager.cfg.state.joints)
    noise = ChunkNoise.draw(eager.cfg, generator=g)
    noise = ChunkNoise(video=noise.video.cuda(), action=noise.action.cuda())
    want = eager.infer(frame.cuda(), q, "pick up the cup", noise)
    assert np.abs(engine.infer(frame.cuda(), q, "pick up the cup", noise) - want).max() < 1e-3
