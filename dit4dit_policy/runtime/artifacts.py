"""Exported artefacts and their manifest: what was exported, from which checkpoint, with what.

An export lives next to its checkpoint, in `DIR/export/<format>-<precision>/`, with
`manifest.json` naming every graph's file, input/output names, shapes and dtypes, the precision,
the library versions, and the sha256 of the checkpoint's weights. A runtime serves an export only
for the checkpoint whose hash it records: weights retrained in place would otherwise be served by
stale graphs without a word.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from dit4dit_policy.model.checkpoint import WEIGHTS

MANIFEST = "manifest.json"
FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
GRAPHS = ("trunk", "denoiser")  # the two export boundaries: VideoTrunk and ActionDenoiser
_VERSIONED = ("torch", "onnx", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"


@dataclass(frozen=True)
class GraphSpec:
    file: str  # relative to the export folder
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Manifest:
    format: str
    precision: str
    preset: str
    batch_size: int
    checkpoint_sha256: str
    graphs: dict[str, GraphSpec]
    versions: dict[str, str | None]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str) -> Manifest:
        try:
            graphs = {
                name: GraphSpec(
                    file=g["file"],
                    inputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in g["inputs"]),
                    outputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in g["outputs"]),
                )
                for name, g in data["graphs"].items()
            }
            manifest = cls(
                format=data["format"],
                precision=data["precision"],
                preset=data["preset"],
                batch_size=int(data["batch_size"]),
                checkpoint_sha256=data["checkpoint_sha256"],
                graphs=graphs,
                versions=dict(data["versions"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source} is not a valid export manifest: {type(e).__name__} {e}") from e
        if manifest.format not in FORMATS or manifest.precision not in PRECISIONS:
            raise ValueError(f"{source}: unknown format {manifest.format!r} or precision {manifest.precision!r}")
        if sorted(graphs) != sorted(GRAPHS):
            raise ValueError(f"{source} lists graphs {sorted(graphs)}; an export has exactly {list(GRAPHS)}")
        return manifest


def export_dir(checkpoint: str | Path, fmt: str, precision: str) -> Path:
    check_format(fmt, precision)
    return Path(checkpoint) / "export" / f"{fmt}-{precision}"


def check_format(fmt: str, precision: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    # numpy, which onnxruntime's Python API speaks, has no bfloat16.
    if fmt == "onnx" and precision == "bf16":
        raise ValueError("precision bf16 is for --format tensorrt only; onnxruntime serves fp32 or fp16")


def checkpoint_sha256(checkpoint: str | Path) -> str:
    path = Path(checkpoint) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint folder: no {WEIGHTS}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries an export depends on; None for one not installed."""
    versions: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2))
    return path


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no export: missing {MANIFEST} (run `dit4dit export`)")
    return Manifest.from_dict(json.loads(path.read_text()), str(path))


def load_matching_manifest(folder: str | Path, checkpoint: str | Path, fmt: str) -> Manifest:
    """The manifest in `folder`, refused unless it is a `fmt` export of exactly this checkpoint."""
    manifest = read_manifest(folder)
    if manifest.format != fmt:
        raise ValueError(f"{folder} holds a {manifest.format} export, not {fmt}")
    actual = checkpoint_sha256(checkpoint)
    if manifest.checkpoint_sha256 != actual:
        raise ValueError(
            f"export {folder} was made from weights with sha256 {manifest.checkpoint_sha256}, but checkpoint "
            f"{checkpoint} has sha256 {actual}; re-export with `dit4dit export --checkpoint {checkpoint} --force`"
        )
    return manifest
