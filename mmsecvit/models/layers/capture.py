# Copyright (c) mmsecvit contributors. All rights reserved.
"""Whether a graph is being recorded (traced, scripted, exported, compiled)."""
import torch


def capturing_graph() -> bool:
    """Whether a graph is being traced, scripted, exported to ONNX or
    compiled: code that only eager execution can run (oneDNN's private
    kernels, Python-side caches) must not be recorded into it."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling())
