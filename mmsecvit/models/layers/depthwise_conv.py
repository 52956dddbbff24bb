# Copyright (c) mmsecvit contributors. All rights reserved.
"""Depth-wise convolutions with a faster weight gradient on the CPU.

oneDNN computes the weight gradient of a 3x3 depth-wise convolution with a
specialised kernel, but that of larger kernels (LePE's 5x5) with a generic
one that is several times slower per multiply-add: for SecViT-S at
800x1333, batch 2, the 5x5 weight gradients took 1.3 s of a 17 s training
step, more than the 3x3 ones with three times the channels.

The weight gradient of a k x k kernel is, tap by tap, a correlation of the
input with the output gradient. Each 3x3 block of taps is the weight
gradient of a 3x3 convolution over the input shifted by the block's offset,
so a k x k gradient is assembled from a few of the fast 3x3 ones (four for
5x5): measured with 2 threads, 2.1-4.2x faster for LePE's shapes in
SecViT-S (e.g. 256 channels at 50x84: 26.0 ms against 9.7 ms; 64
channels at 200x334: 91 ms against 63 ms). The input gradient and the
forward pass are oneDNN's own. Results equal the plain convolution's up to
float32 summation order.
"""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cpu_fusion import conv2d, has_module_hooks, onednn_training


def is_size_preserving_depthwise(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is depth-wise (``groups`` equal to its input and
    output channels) with stride 1, no dilation, odd kernel sides and
    padding of half the kernel, so that its output has the input's size
    and each output value is centred on its input value."""
    kh, kw = conv.kernel_size
    return (conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and kh % 2 == 1 and kw % 2 == 1
            and conv.padding == (kh // 2, kw // 2))


def _window_starts(kernel: int) -> List[int]:
    """First tap of each 3-tap window; the windows cover ``kernel`` taps
    (overlapping by one where ``kernel`` is not 3 plus a multiple of 2)."""
    starts = list(range(0, kernel - 2, 2))
    if starts[-1] != kernel - 3:
        starts.append(kernel - 3)
    return starts


def depthwise_weight_grad_by_3x3(x: torch.Tensor, grad: torch.Tensor,
                                 kernel_size: tuple) -> torch.Tensor:
    """Weight gradient of a stride-1, size-preserving depth-wise
    convolution, assembled from 3x3 weight gradients.

    Args:
        x (Tensor): The convolution's input (B, C, H, W).
        grad (Tensor): The gradient of its output (B, C, H, W).
        kernel_size (tuple[int, int]): Odd sizes, each at least 3.

    Returns:
        Tensor: The weight gradient (C, 1, kh, kw).
    """
    kh, kw = kernel_size
    channels = x.shape[1]
    h, w = x.shape[2:]
    # Padded by half the kernel on every side, as the convolution is.
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2))
    window = x.new_empty(channels, 1, 3, 3)  # only its shape is read
    out = x.new_empty(channels, 1, kh, kw)
    for top in _window_starts(kh):
        for left in _window_starts(kw):
            # Unpadded 3x3 correlation of this window of the padded input.
            block = padded[:, :, top:top + h + 2, left:left + w + 2]
            _, weight_grad, _ = torch.ops.aten.convolution_backward(
                grad, block, window, None, (1, 1), (0, 0), (1, 1), False,
                (0, 0), channels, (False, True, False))
            out[:, :, top:top + 3, left:left + 3] = weight_grad
    return out


class _DepthwiseConv2d(torch.autograd.Function):
    """A stride-1, size-preserving depth-wise convolution whose weight
    gradient comes from :func:`depthwise_weight_grad_by_3x3`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        kh, kw = weight.shape[2:]
        return F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1,
                        x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        kh, kw = weight.shape[2:]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x, _, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (1, 1), (kh // 2, kw // 2), (1, 1),
                False, (0, 0), x.shape[1], (True, False, False))
        if ctx.needs_input_grad[1]:
            grad_weight = depthwise_weight_grad_by_3x3(x, grad, (kh, kw))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias


def _fast_weight_grad_applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Where the assembled weight gradient is used: a depth-wise, stride-1,
    size-preserving kernel larger than 3x3 (odd sides) with zero padding,
    no forward hooks, a float32 CPU input through oneDNN, a gradient being
    recorded, no autocast and no graph being captured (a compiler makes its
    own kernels)."""
    kh, kw = conv.kernel_size
    return (onednn_training(x, conv.weight)
            and is_size_preserving_depthwise(conv)
            and max(kh, kw) > 3 and min(kh, kw) >= 3
            and conv.padding_mode == 'zeros'
            and not has_module_hooks(conv))


def depthwise_conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, with the faster weight gradient where it applies (see
    the module docstring), with a prepacked weight in CPU inference (see
    :func:`~mmsecvit.models.layers.cpu_fusion.conv2d`; not for modules
    with forward hooks or padding other than zeros), and the module's
    forward everywhere else.

    Args:
        conv (nn.Conv2d): Any convolution; the faster gradient is used for
            depth-wise, stride-1, size-preserving kernels larger than 3x3.
            A module with forward hooks is called as a module.
        x (Tensor): Input map (B, C, H, W).

    Returns:
        Tensor: ``conv(x)``.
    """
    if _fast_weight_grad_applies(conv, x):
        return _DepthwiseConv2d.apply(x, conv.weight, conv.bias)
    if conv.padding_mode == 'zeros' and not has_module_hooks(conv):
        # The module's own forward, with a prepacked weight where that
        # applies.
        return conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding,
                      conv.dilation, conv.groups, module=conv)
    return conv(x)
