"""Exported artefacts and their manifest: what was exported, from which checkpoint, with what.

An export lives next to its checkpoint, in `DIR/export/<format>-<precision>/`, with
`manifest.json` naming every graph's file, input/output names, shapes and dtypes, the precision,
the library versions, the sha256 of the checkpoint's weights and config.yaml, and the sha256 of
every file each graph loads. A runtime serves an export only at the precision it asks for, for the
checkpoint whose hashes it records, and from files whose hashes match: weights retrained in place,
a changed preset, or a graph file replaced or cut short would otherwise be served without a word.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from dit4dit_policy.model.checkpoint import CONFIG, WEIGHTS

MANIFEST = "manifest.json"
# 2: config and per-file hashes. Older manifests lack what a runtime now checks, so they are refused.
SCHEMA = 2
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
    sha256: dict[str, str]  # every file the graph loads (the graph or engine, external weights) -> its sha256


@dataclass(frozen=True)
class Manifest:
    format: str
    precision: str
    preset: str
    batch_size: int
    checkpoint_sha256: str
    config_sha256: str
    graphs: dict[str, GraphSpec]
    versions: dict[str, str | None]
    schema: int = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str) -> Manifest:
        if not isinstance(data, dict):
            raise ValueError(f"{source} is not a valid export manifest: a {type(data).__name__}, not an object")
        if data.get("schema", 1) != SCHEMA:
            raise ValueError(
                f"{source} has manifest schema {data.get('schema', 1)}, this dit4dit reads schema {SCHEMA} "
                "(config and file hashes); re-export with `dit4dit export --force`"
            )
        try:
            graphs = {
                name: GraphSpec(
                    file=g["file"],
                    inputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in g["inputs"]),
                    outputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in g["outputs"]),
                    sha256=dict(g["sha256"]),
                )
                for name, g in data["graphs"].items()
            }
            manifest = cls(
                format=data["format"],
                precision=data["precision"],
                preset=data["preset"],
                batch_size=int(data["batch_size"]),
                checkpoint_sha256=data["checkpoint_sha256"],
                config_sha256=data["config_sha256"],
                graphs=graphs,
                versions=dict(data["versions"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source} is not a valid export manifest: {type(e).__name__} {e}") from e
        if manifest.format not in FORMATS or manifest.precision not in PRECISIONS:
            raise ValueError(f"{source}: unknown format {manifest.format!r} or precision {manifest.precision!r}")
        if sorted(graphs) != sorted(GRAPHS):
            raise ValueError(f"{source} lists graphs {sorted(graphs)}; an export has exactly {list(GRAPHS)}")
        unhashed = [name for name, g in graphs.items() if g.file not in g.sha256]
        if unhashed:
            raise ValueError(f"{source} records no sha256 of the file of graph(s) {unhashed}")
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint's weights."""
    return _checkpoint_file_sha256(checkpoint, WEIGHTS)


def config_sha256(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint's config.yaml: the resolved preset the graphs were traced from."""
    return _checkpoint_file_sha256(checkpoint, CONFIG)


def _checkpoint_file_sha256(checkpoint: str | Path, name: str) -> str:
    path = Path(checkpoint) / name
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint folder: no {name}")
    return file_sha256(path)


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


def load_matching_manifest(folder: str | Path, checkpoint: str | Path, fmt: str, precision: str) -> Manifest:
    """The manifest in `folder`, refused unless it is a `fmt` export at `precision` of exactly this
    checkpoint (weights and config), with every graph file as it was written."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    again = f"re-export with `dit4dit export --checkpoint {checkpoint} --format {fmt} --precision {precision} --force`"
    if (manifest.format, manifest.precision) != (fmt, precision):
        raise ValueError(
            f"{folder} holds a {manifest.format} {manifest.precision} export, but {fmt} {precision} was asked "
            f"for; {again}"
        )
    for what, recorded, actual in (
        ("weights", manifest.checkpoint_sha256, checkpoint_sha256(checkpoint)),
        (CONFIG, manifest.config_sha256, config_sha256(checkpoint)),
    ):
        if recorded != actual:
            raise ValueError(
                f"export {folder} was made from {what} with sha256 {recorded}, but the {what} of checkpoint "
                f"{checkpoint} has sha256 {actual}; {again}"
            )
    for graph in manifest.graphs.values():
        for name, recorded in graph.sha256.items():
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"export {folder} lacks {name}, which its manifest lists; {again}")
            actual = file_sha256(path)
            if actual != recorded:
                raise ValueError(
                    f"{path} has sha256 {actual}, but the manifest records {recorded}: the file was replaced or "
                    f"damaged after export; {again}"
                )
    return manifest
