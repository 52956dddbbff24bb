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

Maps of every size are fused (:data:`MIN_FUSED_NUMEL` is 0). Without
prepacked weights (below), a fused kernel cost a fixed time per call that
the plain one did not, and only maps of at least 2**17 values were fused
(measured with one thread: at 7x7x512 the fused GELU took 1.03 ms against
0.93 ms). The small maps read prepacked weights now, and with those the
fused kernel was as fast or faster at every SecViT-S shape measured (an
AMD EPYC with AVX-512, 1 and 2 threads: a 256-to-768 1x1 convolution with
GELU on a 14x14 map 444 against 514 us, on 7x7x512 to 1536 channels 429
against 470 us, the residual sums 0-20% faster); the whole SecViT-S
forward took 0.97x the time at 224x224 and 0.95x at 64x64, and as long at
512x512 (paired runs in one process). :func:`onednn_fusion` still takes a
``min_numel`` for a machine where small maps should not be fused.

Convolutions of maps below :data:`MAX_PREPACKED_NUMEL` values also read
their weights prepacked in inference: oneDNN's kernels read a weight in a
blocked layout of their own, and given an ordinary tensor they reorder it
in every call (for a 1x1 convolution of 256 to 768 channels on a 14x14
map, about a quarter of the call). :func:`prepacked_weight` reorders it
once per weight and input shape and keeps it in the module's inference
cache (:mod:`~mmsecvit.models.layers.param_cache`). The results equal
those with the ordinary weight up to float32 rounding (bit-identical for
SecViT-S at 224x224 and 512x512 without the fusion).

Use :func:`onednn_fusion` to switch the fusion and the prepacked weights
off, e.g. to compare.
"""
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as module_hooks

from .capture import capturing_graph
from .param_cache import cached_derivation

_IntPair = Union[int, Sequence[int]]

#: Maps with fewer values than this (batch included) take the plain
#: operations: none (see the module docstring).
MIN_FUSED_NUMEL = 0

#: Inputs of at least this many values (batch included) take ordinary
#: weights. Measured with 2 threads, a prepacked weight saves a larger share
#: of a small convolution (0.73-0.86x the time at 14x14 and 16x16, 0.82-0.94x
#: at 32x32, 0.92-0.99x at 25x42 and 50x84 for SecViT-S's 1x1 and depth-wise
#: convolutions) and nothing on larger maps, where SecViT-S at 800x1333 with
#: every weight prepacked ran 1.01-1.04x the time (0.995x with this limit).
MAX_PREPACKED_NUMEL = 1 << 20

#: Whether the fused kernels may be used, and from which map size (see
#: :func:`onednn_fusion`).
_enabled = True
_min_numel = MIN_FUSED_NUMEL


def _onednn_ops_available() -> bool:
    mkldnn = getattr(torch.ops, 'mkldnn', None)
    try:
        return (torch.backends.mkldnn.is_available()
                and hasattr(mkldnn, '_convolution_pointwise')
                and hasattr(mkldnn, '_convolution_pointwise_')
                and hasattr(mkldnn, '_reorder_convolution_weight'))
    except (AttributeError, RuntimeError):  # a build without the ops
        return False


_OPS_AVAILABLE = _onednn_ops_available()


@contextmanager
def onednn_fusion(enabled: bool,
                  min_numel: Optional[int] = None) -> Iterator[None]:
    """Allow (``True``, the default outside this context) or forbid the
    fused CPU inference kernels and the prepacked weights within the
    context.

    Args:
        enabled (bool): Whether the fused kernels and prepacked weights may
            be used.
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


def _onednn_inference(x: torch.Tensor) -> bool:
    """Whether oneDNN's private kernels may run on the input ``x``: a
    float32 CPU tensor, no gradient recorded, no graph traced, compiled or
    exported, CPU autocast off, oneDNN available and not switched off by
    :func:`onednn_fusion`."""
    return (_enabled and _OPS_AVAILABLE and x.device.type == 'cpu'
            and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled('cpu')
            and not capturing_graph())


def onednn_training(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN computes the gradient of ``weight`` for a float32
    CPU input ``x``: a gradient is recorded for ``weight``, no graph is
    traced, compiled or exported (a compiler makes its own kernels), CPU
    autocast is off and oneDNN is enabled and available. The checks of
    the faster CPU weight gradients
    (:mod:`~mmsecvit.models.layers.depthwise_conv`,
    :mod:`~mmsecvit.models.layers.dense_conv`) build on it."""
    # The capture check comes first: the oneDNN queries below are functions
    # TorchDynamo does not trace, and would break the graph.
    return (not capturing_graph() and torch.is_grad_enabled()
            and weight.requires_grad and x.device.type == 'cpu'
            and x.dtype == torch.float32 and torch.backends.mkldnn.enabled
            and torch.backends.mkldnn.is_available()
            and not torch.is_autocast_enabled('cpu'))


def fusion_applies(x: torch.Tensor) -> bool:
    """Whether the fused kernels will be used for the input ``x``.

    True for a float32 CPU tensor (of at least the ``min_numel`` of
    :func:`onednn_fusion`, by default any size) when no gradient is
    recorded, no graph is traced, compiled or exported, CPU autocast is
    off, oneDNN is available and :func:`onednn_fusion` has not switched the
    fusion off.
    """
    # The flags first: while a graph is traced for export, ``numel`` is a
    # traced value, and comparing it would record the size as a constant.
    return _onednn_inference(x) and x.numel() >= _min_numel


def prepacking_applies(x: torch.Tensor) -> bool:
    """Whether convolutions of the input ``x`` read prepacked weights: where
    the fused kernels could run (see :func:`fusion_applies`), for maps of
    fewer than :data:`MAX_PREPACKED_NUMEL` values, batch included."""
    return _onednn_inference(x) and x.numel() < MAX_PREPACKED_NUMEL


def has_module_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` would run hooks: forward, forward pre-,
    backward or backward pre-hooks, its own or global ones. Such a module
    is called as a module, not bypassed by a fused kernel on its
    parameters, so that its hooks run and see its own input and output
    (e.g. ``torch.nn.utils.prune``'s pre-hook, which recomputes the
    weight, or a hook keeping features or gradients for a CAM)."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module._backward_hooks or module._backward_pre_hooks
                or module_hooks._global_forward_hooks
                or module_hooks._global_forward_pre_hooks
                or module_hooks._global_backward_hooks
                or module_hooks._global_backward_pre_hooks)


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


def _only_channels_last(x: torch.Tensor) -> bool:
    """Channels-last and not also contiguous (maps with one pixel or one
    channel are both, and the plain convolution decides for them)."""
    return (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


def prepacked_weight(module: nn.Module,
                     weight: torch.Tensor,
                     x: torch.Tensor,
                     stride: _IntPair = 1,
                     padding: _IntPair = 0,
                     dilation: _IntPair = 1,
                     groups: int = 1) -> torch.Tensor:
    """``weight`` in the layout oneDNN's convolution of maps shaped like
    ``x`` reads, kept in ``module``'s inference cache.

    Reordered again when ``weight`` changes (see
    :func:`~mmsecvit.models.layers.param_cache.cached_derivation`) or the
    input shape or the convolution's arguments do: the layout oneDNN picks
    depends on the problem's size. Use it only with
    ``torch.ops.mkldnn._convolution_pointwise`` (and its in-place variant)
    where :func:`prepacking_applies`.

    Args:
        module (nn.Module): The module the convolution belongs to; one
            prepacked weight is kept per module.
        weight (Tensor): The weight the convolution would use.
        x (Tensor): Its input.
        stride, padding, dilation, groups: As for
            :func:`torch.nn.functional.conv2d`.

    Returns:
        Tensor: An opaque oneDNN tensor.
    """
    padding, stride, dilation = _pair(padding), _pair(stride), _pair(dilation)
    shape = list(x.shape)

    def reorder() -> tuple:
        return (torch.ops.mkldnn._reorder_convolution_weight(
            weight, padding, stride, dilation, groups, shape), )

    packed, = cached_derivation(
        module,
        'onednn_weight',
        reorder, (weight, ),
        extra=(tuple(padding), tuple(stride), tuple(dilation), groups,
               tuple(shape)))
    return packed


def _fused_weight(module: Optional[nn.Module], weight: torch.Tensor,
                  x: torch.Tensor, stride: _IntPair, padding: _IntPair,
                  dilation: _IntPair, groups: int) -> torch.Tensor:
    """The weight for a fused kernel on ``x`` (where
    :func:`fusion_applies`, so oneDNN may run): prepacked for maps of fewer
    than :data:`MAX_PREPACKED_NUMEL` values when ``module`` is given."""
    if module is None or x.numel() >= MAX_PREPACKED_NUMEL:
        return weight
    return prepacked_weight(module, weight, x, stride, padding, dilation,
                            groups)


def conv2d(x: torch.Tensor,
           weight: torch.Tensor,
           bias: Optional[torch.Tensor] = None,
           stride: _IntPair = 1,
           padding: _IntPair = 0,
           dilation: _IntPair = 1,
           groups: int = 1,
           module: Optional[nn.Module] = None) -> torch.Tensor:
    """:func:`torch.nn.functional.conv2d`, reading the weight prepacked
    where :func:`prepacking_applies`, ``module`` is given, the zero padding
    is given as numbers and ``x`` is a channels-last map (oneDNN's kernel
    would return a channels-last output for an NCHW one; SecViT's maps are
    channels-last).

    Args:
        x, weight, bias, stride, padding, dilation, groups: As for
            :func:`torch.nn.functional.conv2d`.
        module (nn.Module, optional): Keeps the prepacked weight (see
            :func:`prepacked_weight`); None for the plain convolution.

    Returns:
        Tensor: The convolution's output.
    """
    if (module is None or isinstance(padding, str)
            or not _only_channels_last(x) or not prepacking_applies(x)):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    packed = prepacked_weight(module, weight, x, stride, padding, dilation,
                              groups)
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, bias, _pair(padding), _pair(stride), _pair(dilation),
        groups, 'none', [], '')


def conv2d_gelu(x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                stride: _IntPair = 1,
                padding: _IntPair = 0,
                dilation: _IntPair = 1,
                groups: int = 1,
                module: Optional[nn.Module] = None) -> torch.Tensor:
    """``gelu(conv2d(x))`` (the exact, erf-based GELU of ``nn.GELU()``).

    Args:
        x (Tensor): Input map (B, C, H, W).
        weight, bias (Tensor): Parameters of the convolution.
        stride, padding, dilation, groups: As for
            :func:`torch.nn.functional.conv2d`.
        module (nn.Module, optional): Keeps the prepacked weight (see
            :func:`conv2d`).

    Returns:
        Tensor: The activated output, in the memory format a plain
        convolution would give.
    """
    if fusion_applies(x):
        weight = _fused_weight(module, weight, x, stride, padding, dilation,
                               groups)
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, _pair(padding), _pair(stride), _pair(dilation),
            groups, 'gelu', [], 'none')
    return gelu_(
        conv2d(x, weight, bias, stride, padding, dilation, groups, module))


def conv2d_add_(identity: torch.Tensor,
                x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                padding: _IntPair = 0,
                groups: int = 1,
                module: Optional[nn.Module] = None) -> torch.Tensor:
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
        module (nn.Module, optional): Keeps the prepacked weight (see
            :func:`conv2d`).

    Returns:
        Tensor: The sum.
    """
    if fusion_applies(x) and fusion_applies(identity) and (
            identity.is_contiguous()
            or identity.is_contiguous(memory_format=torch.channels_last)):
        weight = _fused_weight(module, weight, x, 1, padding, 1, groups)
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            identity, x, weight, bias, _pair(padding), [1, 1], [1, 1],
            groups, 'add', None, None, [], None)
    return add_scaled_(
        identity, conv2d(x, weight, bias, 1, padding, 1, groups, module))
