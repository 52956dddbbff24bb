# Copyright (c) mmsecvit contributors. All rights reserved.
"""Convolutions with their element-wise epilogue fused, for CPU inference.

oneDNN, the library behind PyTorch's CPU convolutions, can apply an
activation to a convolution's output, or add the output to another map,
while the output is still in cache (its "post-ops"). That saves a pass over
the map per fused operation and, when the sum is written into the other map
in place, the allocation of a new one. At dense-prediction resolutions on a
CPU these passes are bound by memory bandwidth, so they are a sizeable share
of the time (GELU, the LePE sum and two residual sums per block).

PyTorch exposes the fused kernels as
``torch.ops.mkldnn._convolution_pointwise`` (the operators Inductor's CPU
backend emits). They have no autograd formula, so they are used only where
nothing records a gradient, only for float32
CPU tensors (oneDNN has no float64 kernels; the float64 equivalence tests
therefore run the unfused code, which these functions fall back to), and
never while a graph is traced, compiled or exported, or under autocast.
Results equal the unfused operations up to float32 rounding (the sum is
computed in the convolution's accumulator instead of after it).

The fused kernels cost a fixed time per call (about 0.1-0.3 ms on the
development machine) that the plain ones do not, so they are used only for
maps of at least :data:`MIN_FUSED_NUMEL` values: measured with one thread,
fusing pays from about 2**17 values per map (e.g. 56x56x64: the fused
GELU 0.86 ms against 1.29 ms, the fused sum 0.67 ms against 0.80 ms) and
costs at 7x7x512 (GELU 1.03 ms against 0.93 ms, sum 1.15 ms against
0.86 ms).

Use :func:`onednn_fusion` to switch the fusion off, e.g. to compare.
"""
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as module_hooks

_IntPair = Union[int, Sequence[int]]

#: Maps with fewer values than this (batch included) take the plain
#: operations (see the module docstring).
MIN_FUSED_NUMEL = 1 << 17

#: Whether the fused kernels may be used, and from which map size (see
#: :func:`onednn_fusion`).
_enabled = True
_min_numel = MIN_FUSED_NUMEL


def _onednn_ops_available() -> bool:
    mkldnn = getattr(torch.ops, 'mkldnn', None)
    try:
        return (torch.backends.mkldnn.is_available()
                and hasattr(mkldnn, '_convolution_pointwise')
                and hasattr(mkldnn, '_convolution_pointwise_'))
    except (AttributeError, RuntimeError):  # a build without the ops
        return False


_OPS_AVAILABLE = _onednn_ops_available()


@contextmanager
def onednn_fusion(enabled: bool,
                  min_numel: Optional[int] = None) -> Iterator[None]:
    """Allow (``True``, the default outside this context) or forbid the
    fused CPU inference kernels within the context.

    Args:
        enabled (bool): Whether the fused kernels may be used.
        min_numel (int, optional): Smallest map (values, batch included)
            to fuse within the context; defaults to the current one
            (:data:`MIN_FUSED_NUMEL` outside any context).

    Examples:
        >>> with onednn_fusion(False):
        ...     outs = model(images)  # the plain operations
    """
    global _enabled, _min_numel
    previous = _enabled, _min_numel
    _enabled = enabled
    if min_numel is not None:
        _min_numel = min_numel
    try:
        yield
    finally:
        _enabled, _min_numel = previous


def capturing_graph() -> bool:
    """Whether a graph is being traced, scripted, exported to ONNX or
    compiled: code that only eager execution can run (oneDNN's private
    kernels, Python-side caches) must not be recorded into it."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling())


def fusion_applies(x: torch.Tensor) -> bool:
    """Whether the fused kernels will be used for the input ``x``.

    True for a float32 CPU tensor of at least :data:`MIN_FUSED_NUMEL`
    values when no gradient is recorded, no graph is traced, compiled or
    exported, CPU autocast is off, oneDNN is available and
    :func:`onednn_fusion` has not switched the fusion off.
    """
    return (_enabled and _OPS_AVAILABLE and x.device.type == 'cpu'
            and x.dtype == torch.float32 and x.numel() >= _min_numel
            and not torch.is_grad_enabled()
            and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled('cpu')
            and not capturing_graph())


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` would run forward (pre-)hooks, its own or
    global ones. Such a module is called as a module, not bypassed by a
    fused kernel on its parameters, so that the hooks see its output."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module_hooks._global_forward_hooks
                or module_hooks._global_forward_pre_hooks)


def gelu_(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU, computed in place when no gradient will flow through
    ``x`` (inference: one map less to allocate), else out of place."""
    if x.requires_grad:
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


def add_scaled_(identity: torch.Tensor, out: torch.Tensor,
                scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``identity + scale * out`` (``scale`` None: 1), into ``identity``
    where no gradient is recorded (the caller owns it), else a new
    tensor."""
    if scale is not None:
        out = scale * out
    if torch.is_grad_enabled():
        return identity + out
    return identity.add_(out)


def _pair(value: _IntPair) -> list:
    return [value, value] if isinstance(value, int) else list(value)


def conv2d_gelu(x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                stride: _IntPair = 1,
                padding: _IntPair = 0,
                dilation: _IntPair = 1,
                groups: int = 1) -> torch.Tensor:
    """``gelu(conv2d(x))`` (the exact, erf-based GELU of ``nn.GELU()``).

    Args:
        x (Tensor): Input map (B, C, H, W).
        weight, bias (Tensor): Parameters of the convolution.
        stride, padding, dilation, groups: As for
            :func:`torch.nn.functional.conv2d`.

    Returns:
        Tensor: The activated output, in the memory format a plain
        convolution would give.
    """
    if fusion_applies(x):
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, _pair(padding), _pair(stride), _pair(dilation),
            groups, 'gelu', [], 'none')
    return gelu_(F.conv2d(x, weight, bias, stride, padding, dilation, groups))


def conv2d_add_(identity: torch.Tensor,
                x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                padding: _IntPair = 0,
                groups: int = 1) -> torch.Tensor:
    """``identity + conv2d(x)`` for a stride-1 convolution, written into
    ``identity`` where no gradient is recorded.

    The caller must own ``identity``: without gradients it is overwritten
    by the sum (and returned), by the fused kernel where it applies, else
    by an in-place addition. With gradients the sum is a new tensor and
    ``identity`` is left unchanged, so autograd sees ordinary out-of-place
    operations.

    Args:
        identity (Tensor): The map to add to, of the output's shape.
        x (Tensor): Input map of the convolution.
        weight, bias (Tensor): Parameters of the convolution.
        padding, groups: As for :func:`torch.nn.functional.conv2d`
            (stride and dilation 1).

    Returns:
        Tensor: The sum.
    """
    if fusion_applies(x) and fusion_applies(identity) and (
            identity.is_contiguous()
            or identity.is_contiguous(memory_format=torch.channels_last)):
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            identity, x, weight, bias, _pair(padding), [1, 1], [1, 1],
            groups, 'add', None, None, [], None)
    return add_scaled_(identity, F.conv2d(x, weight, bias, 1, padding, 1,
                                          groups))
