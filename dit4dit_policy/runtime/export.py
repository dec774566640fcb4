"""`export(checkpoint, fmt, precision)`: ONNX graphs or TensorRT engines next to the checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dit4dit_policy.files import staged_folder
from dit4dit_policy.model import load_checkpoint
from dit4dit_policy.runtime.artifacts import (
    Manifest,
    check_format,
    checkpoint_sha256,
    config_sha256,
    export_dir,
    file_sha256,
    library_versions,
    write_manifest,
)
from dit4dit_policy.runtime.onnx_backend import export_onnx
from dit4dit_policy.runtime.runtime import TORCH_DTYPES
from dit4dit_policy.runtime.tensorrt_backend import build_engine, import_tensorrt

DEFAULT_PRECISION = {"onnx": "fp32", "tensorrt": "bf16"}


def export(
    checkpoint: str | Path, fmt: str, precision: str | None = None, *, force: bool = False, batch_size: int = 1
) -> Path:
    """Write `checkpoint/export/<fmt>-<precision>/` (graphs + manifest.json) and return it. An
    existing export is replaced only with `force`; the new one is staged beside it and moved in
    whole, so a failed export never leaves a half one."""
    checkpoint = Path(checkpoint)
    precision = precision or DEFAULT_PRECISION.get(fmt, "fp32")
    check_format(fmt, precision)
    if fmt == "tensorrt":
        import_tensorrt()  # fail before spending minutes on the ONNX export
    target = export_dir(checkpoint, fmt, precision)
    if target.exists() and not force:
        raise FileExistsError(f"export {target} already exists; pass --force to replace it")
    digest, config_digest = checkpoint_sha256(checkpoint), config_sha256(checkpoint)
    model, _ = load_checkpoint(checkpoint)
    model = model.to(TORCH_DTYPES[precision])
    with staged_folder(target) as staging:
        if fmt == "onnx":
            graphs = export_onnx(model, staging, batch_size)
        else:
            graphs = _export_tensorrt(model, staging, batch_size)
        write_manifest(
            staging,
            Manifest(
                format=fmt,
                precision=precision,
                preset=model.cfg.name,
                batch_size=batch_size,
                checkpoint_sha256=digest,
                config_sha256=config_digest,
                graphs=graphs,
                versions=library_versions(),
            ),
        )
    return target


def _export_tensorrt(model, folder: Path, batch_size: int):
    onnx_folder = folder / "onnx"  # kept: the engine's exact source, for inspection and rebuilds
    onnx_folder.mkdir()
    graphs = export_onnx(model, onnx_folder, batch_size)
    for name, spec in graphs.items():
        engine = folder / f"{name}.engine"
        build_engine(onnx_folder / spec.file, engine)
        # The engine holds its weights: it is the one file served.
        graphs[name] = replace(spec, file=engine.name, sha256={engine.name: file_sha256(engine)})
    return graphs
