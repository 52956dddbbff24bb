# Copyright (c) mmsecvit contributors. All rights reserved.
"""Dense convolutions with a faster weight gradient on channels-last CPU
maps.

SecViT's stem and downsampling layers are dense 3x3 convolutions on
channels-last maps. For their weight gradient, oneDNN (3.12 in torch 2.13,
AVX2) picks a kernel that ran at 14-17 GMAC/s on SecViT-S's shapes at
800x1333, batch 2, on a 2-core AMD EPYC machine whose matrix products
reach 65-85: the backward passes of those convolutions took 2.7-3.0 s of
a training step (20-34 s there), several times their forward passes.

The weight gradient of a convolution is one matrix product: the output
gradient, (positions, out channels), transposed, times the input patches,
(positions, kernel taps x in channels). On a channels-last map every
patch row is a few slices of the padded input, so a chunk of rows (about
:data:`CHUNK_BYTES` of patches) is copied into a reused buffer and
multiplied there; the products accumulate into the gradient. Measured on
that machine with 2 threads, 1.5-3.5x faster than oneDNN at SecViT-S's
shapes at 512x512 and 800x1333 (e.g. 32 to 64 channels with stride 2 at
400x667: 267 ms against 102 ms; 128 to 256 at 100x167: 134 against 41
ms); those backward passes took 1.3-1.8 s of the step at 800x1333
instead (profiled). With 16 channels oneDNN's kernel was the faster one,
hence :data:`MIN_CHANNELS`.

oneDNN's AVX-512 kernels are another matter: on a 2-core AMD EPYC machine
with AVX-512 (fp32 matrix products at 62-89 GMAC/s) its weight gradient
ran at 59-93 GMAC/s for the convolutions with 32 input channels at
800x1333 (32 to 32 at 400x667: 49-103 ms against 128-281 ms by patch
products; 32 to 64 with stride 2: 34-42 against 65-102 ms), while from 64
input channels the patch products stayed as fast or faster (128 to 256 at
100x167: 33-47 against 40-90 ms). Where PyTorch's CPU capability is
AVX-512, the path therefore starts at :data:`MIN_IN_CHANNELS_AVX512`
input channels (see :func:`min_in_channels`).

The input gradient and the forward pass stay oneDNN's. Results equal the
plain convolution's up to float32 summation order.
:func:`dense_conv_weight_grad` switches the path off (e.g. on a machine
where oneDNN's kernel is faster).
"""
from typing import ContextManager, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .cpu_fusion import _only_channels_last, has_module_hooks, onednn_training
from .switch import Switch

#: Bytes of input patches copied and multiplied at a time (4 MiB was the
#: fastest of 1, 4 and 16 MiB at every measured shape).
CHUNK_BYTES = 4 * 2**20
#: Fewest input and output channels for the path (oneDNN's own kernel was
#: faster with 16).
MIN_CHANNELS = 32
#: Fewest input channels for the path where PyTorch's CPU capability is
#: AVX-512 (oneDNN's AVX-512 weight-gradient kernel was 2-5x faster than
#: the patch products with 32, see the module docstring).
MIN_IN_CHANNELS_AVX512 = 64

_switch = Switch()


def dense_conv_weight_grad(enabled: bool) -> ContextManager[None]:
    """Allow (``True``, the default outside this context) or forbid the
    weight gradient by patch products within the context; forbidden,
    every convolution computes its gradients with oneDNN.

    Examples:
        >>> with dense_conv_weight_grad(False):
        ...     model(images).sum().backward()
    """
    return _switch.set(enabled)


def weight_grad_by_patches(x: torch.Tensor, grad: torch.Tensor,
                           kernel_size: Tuple[int, int],
                           stride: Tuple[int, int],
                           padding: Tuple[int, int]) -> torch.Tensor:
    """Weight gradient of a dense (``groups=1``), undilated convolution
    with zero padding, as products of the output gradient with chunks of
    input patches.

    Args:
        x (Tensor): The convolution's input (B, C, H, W), any layout (a
            channels-last one is read without a copy).
        grad (Tensor): The gradient of its output (B, O, H_out, W_out).
        kernel_size, stride, padding (tuple[int, int]): The convolution's.

    Returns:
        Tensor: The weight gradient (O, C, kh, kw).
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    channels, out_channels = x.shape[1], grad.shape[1]
    out_h, out_w = grad.shape[2:]
    # (B, H + 2 ph, W + 2 pw, C) and (B, H_out, W_out, O): token-major.
    padded = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1).contiguous()
    grad = grad.permute(0, 2, 3, 1).contiguous()
    patch_row = out_w * kh * kw * channels  # values of one output row
    rows = max(1, min(out_h, CHUNK_BYTES // (patch_row * x.element_size())))
    buffer = x.new_empty(rows * patch_row)
    total = x.new_zeros(out_channels, kh * kw * channels)
    for image in range(x.shape[0]):
        for top in range(0, out_h, rows):
            count = min(rows, out_h - top)
            patches = buffer[:count * patch_row].view(count, out_w, kh, kw,
                                                      channels)
            for i in range(kh):
                # Input rows and columns under tap (i, j) of the chunk.
                in_rows = slice(top * sh + i, (top + count - 1) * sh + i + 1,
                                sh)
                for j in range(kw):
                    in_cols = slice(j, (out_w - 1) * sw + j + 1, sw)
                    patches[:, :, i, j] = padded[image, in_rows, in_cols]
            positions = count * out_w
            total.addmm_(grad[image, top:top + count].reshape(positions,
                                                              -1).t(),
                         patches.view(positions, -1))
    # (O, kh, kw, C) -> (O, C, kh, kw), the layout of the weight.
    total = total.view(out_channels, kh, kw, channels)
    return total.permute(0, 3, 1, 2).contiguous()


class _DenseConv2d(torch.autograd.Function):
    """A dense, undilated, zero-padded convolution whose weight gradient
    comes from :func:`weight_grad_by_patches`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor], stride: Tuple[int, int],
                padding: Tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x, _, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, ctx.stride, ctx.padding, (1, 1),
                False, (0, 0), 1, (True, False, False))
        if ctx.needs_input_grad[1]:
            grad_weight = weight_grad_by_patches(x, grad, weight.shape[2:],
                                                 ctx.stride, ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


def min_in_channels() -> int:
    """Fewest input channels of a convolution whose weight gradient is
    taken by patch products on this machine: :data:`MIN_CHANNELS`, or
    :data:`MIN_IN_CHANNELS_AVX512` where PyTorch's CPU capability
    (``torch.backends.cpu.get_cpu_capability()``, the instruction set
    its kernels were dispatched for; oneDNN picks its own by the same
    CPU flags) is AVX-512."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.upper().startswith('AVX512'):
        return MIN_IN_CHANNELS_AVX512
    return MIN_CHANNELS


def weight_grad_by_patches_applies(x: torch.Tensor, weight: torch.Tensor,
                                   dilation=1, groups: int = 1) -> bool:
    """Where :func:`conv2d_fast_weight_grad` takes the weight gradient by
    patch products: a float32, channels-last CPU input through oneDNN with
    a gradient being recorded for ``weight``, a dense (``groups=1``),
    undilated kernel larger than 1x1 with at least :data:`MIN_CHANNELS`
    output channels and :func:`min_in_channels` input channels, no
    autocast, no graph being captured (a compiler makes its own kernels)
    and the path not switched off by :func:`dense_conv_weight_grad`."""
    return (_switch.enabled and onednn_training(x, weight)
            and _only_channels_last(x) and groups == 1
            and _pair(dilation) == (1, 1)
            and tuple(weight.shape[2:]) != (1, 1)
            and weight.shape[0] >= MIN_CHANNELS
            and weight.shape[1] >= min_in_channels())


def conv2d_fast_weight_grad(x: torch.Tensor,
                            weight: torch.Tensor,
                            bias: Optional[torch.Tensor] = None,
                            stride=1,
                            padding=0,
                            dilation=1,
                            groups: int = 1) -> torch.Tensor:
    """:func:`torch.nn.functional.conv2d` (zero padding), with the weight
    gradient by patch products where :func:`weight_grad_by_patches_applies`
    and the padding is given as numbers."""
    if (not isinstance(padding, str) and weight_grad_by_patches_applies(
            x, weight, dilation, groups)):
        return _DenseConv2d.apply(x, weight, bias, _pair(stride),
                                  _pair(padding))
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def dense_conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, with the weight gradient by patch products where it
    applies (see :func:`weight_grad_by_patches_applies`; not for modules
    with forward hooks, string or non-zero padding modes), and the
    module's forward everywhere else.

    Args:
        conv (nn.Conv2d): Any convolution. A module with forward hooks is
            called as a module.
        x (Tensor): Input map (B, C, H, W).

    Returns:
        Tensor: ``conv(x)``.
    """
    if conv.padding_mode != 'zeros' or has_module_hooks(conv):
        return conv(x)
    return conv2d_fast_weight_grad(x, conv.weight, conv.bias, conv.stride,
                                   conv.padding, conv.dilation, conv.groups)
