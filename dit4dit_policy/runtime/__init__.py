"""Inference runtimes behind one interface: torch eager, torch compiled, ONNX Runtime, TensorRT.

`export(checkpoint, "onnx" | "tensorrt", precision)` writes the graphs next to a checkpoint;
`open_runtime(backend, checkpoint)` serves it; `Runtime.infer(frame, joint_positions, instruction)`
-> actions [H, real_dim] in robot units. No ROS here.
"""

from dit4dit_policy.runtime.artifacts import Manifest, checkpoint_sha256, export_dir, read_manifest
from dit4dit_policy.runtime.export import export
from dit4dit_policy.runtime.runtime import BACKENDS, Runtime, open_runtime

__all__ = [
    "BACKENDS",
    "Manifest",
    "Runtime",
    "checkpoint_sha256",
    "export",
    "export_dir",
    "open_runtime",
    "read_manifest",
]
