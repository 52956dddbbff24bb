# Copyright (c) mmsecvit contributors. All rights reserved.
"""Element-wise work folded into convolutions.

Each function computes what two modules would, as one convolution with
adjusted parameters: no extra pass over the map and no extra map to
allocate. The parameters of the modules, and the gradients they receive,
are the same as for the two modules in sequence; results differ by
rounding only.
"""
from typing import Optional

import torch
import torch.nn as nn

from .cpu_fusion import (add_scaled_, conv2d, conv2d_add_, conv2d_gelu, gelu_,
                         has_module_hooks)
from .dense_conv import conv2d_fast_weight_grad, dense_conv2d
from .depthwise_conv import is_size_preserving_depthwise
from .norm import BATCH_NORMS, batch_norm
from .param_cache import cached_derivation


def conv_plus_identity(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Compute ``x + conv(x)`` as a single convolution.

    For a depth-wise convolution of stride 1 whose padding keeps the size,
    adding the input equals adding 1 to the centre tap of every kernel. The
    sum then costs no extra pass over the map (nor an extra saved tensor in
    training), and ``conv``'s parameters and their gradients are the same as
    for ``x + conv(x)``; results differ from it by rounding only. A
    ``conv`` with hooks (:func:`~mmsecvit.models.layers.cpu_fusion.
    has_module_hooks`) is called as a module, and ``x`` added to its output.

    Args:
        conv (nn.Conv2d): A depth-wise convolution (``groups`` equal to its
            input and output channels) with stride 1, an odd kernel and
            padding of half the kernel.
        x (Tensor): Input map (B, C, H, W).

    Returns:
        Tensor: ``x + conv(x)``.
    """
    kh, kw = conv.kernel_size
    if not is_size_preserving_depthwise(conv):
        raise ValueError(f'conv_plus_identity needs a size-preserving '
                         f'depth-wise convolution, got {conv}.')
    if has_module_hooks(conv):
        return x + conv(x)

    def plus_identity():
        weight = conv.weight.clone()
        weight[:, :, kh // 2, kw // 2] += 1
        return weight,

    weight, = cached_derivation(conv, 'plus_identity', plus_identity,
                                (conv.weight, ))
    return conv2d(x, weight, conv.bias, 1, conv.padding, 1, conv.groups,
                  module=conv)


def scaled_conv_params(conv: nn.Conv2d,
                       scale: Optional[torch.Tensor] = None) -> tuple:
    """Weight and bias of ``conv`` with its output channels multiplied by
    ``scale`` (shape (1, C, 1, 1), e.g. a layer scale), so that one
    convolution computes ``scale * conv(x)``; unchanged if ``scale`` is
    None."""
    if scale is None:
        return conv.weight, conv.bias
    scale = scale.reshape(-1)
    bias = None if conv.bias is None else conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


def residual_conv_(identity: torch.Tensor,
                   conv: nn.Conv2d,
                   x: torch.Tensor,
                   scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``identity + scale * conv(x)``: a branch's last convolution and the
    residual sum, for a stride-1 ``conv``.

    Where no gradient is recorded the sum is written into ``identity``
    (the caller must own it), by the fused CPU kernel where it applies
    (:func:`~mmsecvit.models.layers.cpu_fusion.conv2d_add_`), with
    ``scale`` folded into the convolution. A ``conv`` with hooks is called
    as a module, so that its hooks see (and may change) its output.

    Args:
        identity (Tensor): The residual, of the output's shape.
        conv (nn.Conv2d): The branch's last convolution (stride 1).
        x (Tensor): Its input.
        scale (Tensor, optional): Per-channel factors (1, C, 1, 1) of the
            branch output (a layer scale); None for 1.

    Returns:
        Tensor: The sum.
    """
    if has_module_hooks(conv):
        return add_scaled_(identity, conv(x), scale)
    weight, bias = cached_derivation(
        conv, 'scaled', lambda: scaled_conv_params(conv, scale),
        (conv.weight, conv.bias, scale))
    return conv2d_add_(identity, x, weight, bias, conv.padding, conv.groups,
                       module=conv)


def foldable(norm: nn.Module) -> bool:
    """Whether ``norm`` is a BatchNorm that normalises by its running
    statistics (eval mode), i.e. a per-channel affine map."""
    return (isinstance(norm, BATCH_NORMS) and not norm.training
            and norm.running_mean is not None)


def fold_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> Optional[tuple]:
    """Weight and bias of one convolution computing ``norm(conv(x))``, for
    a BatchNorm that normalises by its running statistics (eval mode).

    In eval mode a BatchNorm is a per-channel affine map, so it can scale
    the kernel and shift the bias instead.

    Args:
        conv (nn.Conv2d): The convolution.
        norm (nn.Module): The norm layer after it.

    Returns:
        tuple[Tensor, Tensor] | None: The folded weight and bias, or None
        when ``norm`` cannot be folded (training mode, or another norm).
    """
    if not foldable(norm):
        return None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return conv.weight * scale.reshape(-1, 1, 1, 1), shift


def conv_norm(conv: nn.Conv2d,
              norm: nn.Module,
              x: torch.Tensor,
              gelu: bool = False) -> torch.Tensor:
    """Compute ``norm(conv(x))`` (then GELU if ``gelu``), with a BatchNorm
    in eval mode folded into the convolution (see :func:`fold_conv_norm`).

    Folded, the GELU runs in the convolution's epilogue where
    :mod:`~mmsecvit.models.layers.cpu_fusion` applies. In training mode
    (batch statistics), for other norm layers, or where ``conv`` or
    ``norm`` has hooks, the modules run as they are (mmcv's SyncBatchNorm
    on an NCHW copy, see :func:`~mmsecvit.models.layers.norm.batch_norm`).
    Where a gradient reaches the convolution's weight, it comes from
    :mod:`~mmsecvit.models.layers.dense_conv` where that applies.

    Args:
        conv (nn.Conv2d): The convolution.
        norm (nn.Module): The norm layer after it.
        x (Tensor): Input map.
        gelu (bool): Whether to apply the exact GELU after the norm.

    Returns:
        Tensor: ``norm(conv(x))``, activated if ``gelu``.
    """
    if not foldable(norm) or has_module_hooks(norm) or has_module_hooks(conv):
        # dense_conv2d calls a convolution with hooks as a module.
        out = batch_norm(norm, dense_conv2d(conv, x))
        return gelu_(out) if gelu else out

    def fold():
        weight, bias = fold_conv_norm(conv, norm)
        # Channels-last like the maps: mkldnn would otherwise transpose a
        # dense kernel in every call (a strided copy, 2.4 ms for the last
        # downsampling's on 2 cores).
        return weight.contiguous(memory_format=torch.channels_last), bias

    folded = cached_derivation(
        conv,
        'folded_norm',
        fold,
        # A training-mode pass updates the running statistics without
        # bumping their version counters, but counts itself in
        # num_batches_tracked.
        (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean,
         norm.running_var, norm.num_batches_tracked),
        extra=norm.eps)
    if folded[0].requires_grad and torch.is_grad_enabled():
        # Training with frozen statistics (e.g. ``norm_eval``): the
        # folded kernel's gradient reaches the convolution's weight.
        out = conv2d_fast_weight_grad(x, *folded, conv.stride, conv.padding,
                                      conv.dilation, conv.groups)
        return gelu_(out) if gelu else out
    if gelu:
        return conv2d_gelu(x, *folded, conv.stride, conv.padding,
                           conv.dilation, conv.groups, module=conv)
    return conv2d(x, *folded, conv.stride, conv.padding, conv.dilation,
                  conv.groups, module=conv)
