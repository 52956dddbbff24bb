# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time the weight gradients of a backbone's dense convolutions, oneDNN's
kernel against the patch products of
:mod:`~mmsecvit.models.layers.dense_conv`, at the shapes it uses.

Which of the two is faster depends on the CPU: oneDNN's AVX2 kernel ran
SecViT-S's stem and downsampling gradients at 800x1333 at 14-17 GMAC/s
on one machine, its AVX-512 kernel the 32-channel ones at 59-93 on
another (docs/benchmark.md). This measures it on the machine at hand:

1. :func:`record_dense_convs` runs the backbone once and records every
   dense (``groups=1``), undilated, zero-padded convolution with a kernel
   larger than 1x1 and the shape of its input.
2. :func:`time_weight_grads` times, for each, oneDNN's weight gradient
   (``aten.convolution_backward`` asked for the weight only) and
   :func:`~mmsecvit.models.layers.dense_conv.weight_grad_by_patches` on
   random channels-last float32 maps, compares the two results, and notes
   whether the backbone's training step takes the patch products for that
   convolution on this machine (:func:`~mmsecvit.models.layers.dense_conv.
   weight_grad_by_patches_applies`).
3. :func:`format_conv_grad_table` reports each one's time, its arithmetic
   rate (``out positions x out channels x in channels x kernel taps``
   multiply-adds) and the total of one training step.
"""
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmsecvit.analysis.attention_benchmark import KernelTiming
from mmsecvit.analysis.benchmark import check_repeats
from mmsecvit.models.layers.dense_conv import (weight_grad_by_patches,
                                               weight_grad_by_patches_applies)

#: The two ways of computing the weight gradient, in table order.
METHODS = ('onednn', 'patches')


@dataclass(frozen=True)
class DenseConvShape:
    """One dense convolution of a forward pass: its input (B, C, H, W),
    output channels, kernel, stride and padding, with the number of
    calls."""

    input_shape: Tuple[int, int, int, int]
    out_channels: int
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    calls: int = 1

    @property
    def output_size(self) -> Tuple[int, int]:
        return tuple((size + 2 * pad - kernel) // step + 1
                     for size, pad, kernel, step in zip(
                         self.input_shape[2:], self.padding,
                         self.kernel_size, self.stride))

    @property
    def macs(self) -> int:
        """Multiply-adds of the weight gradient (as of the forward)."""
        return (self.input_shape[0] * math.prod(self.output_size) *
                self.out_channels * self.input_shape[1] *
                math.prod(self.kernel_size))

    def __str__(self) -> str:
        batch, channels, height, width = self.input_shape
        return (f'{channels} to {self.out_channels}, '
                f'{self.kernel_size[0]}x{self.kernel_size[1]} stride '
                f'{self.stride[0]}, {batch}x{height}x{width}')


def _is_dense(conv: nn.Conv2d) -> bool:
    return (conv.groups == 1 and conv.dilation == (1, 1)
            and conv.kernel_size != (1, 1)
            and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str))


def record_dense_convs(model: nn.Module,
                       inputs: torch.Tensor) -> List[DenseConvShape]:
    """The dense convolutions of one forward pass of ``model``.

    Args:
        model (nn.Module): Run once, without gradients, in its current
            mode (recorded by forward pre-hooks, removed afterwards).
        inputs (Tensor): Its input, e.g. (B, 3, H, W).

    Returns:
        list[DenseConvShape]: One entry per distinct convolution shape,
        with its number of calls; in the order of the forward pass.
    """
    counts: Counter = Counter()

    def record(conv: nn.Conv2d, args: tuple) -> None:
        counts[(tuple(args[0].shape), conv.out_channels, conv.kernel_size,
                conv.stride, conv.padding)] += 1

    handles = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if isinstance(module, nn.Conv2d) and _is_dense(module)
    ]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [
        DenseConvShape(*key, calls=calls) for key, calls in counts.items()
    ]


def _onednn_weight_grad(x: torch.Tensor, grad: torch.Tensor,
                        weight: torch.Tensor,
                        shape: DenseConvShape) -> torch.Tensor:
    _, weight_grad, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, shape.stride, shape.padding, (1, 1), False,
        (0, 0), 1, (False, True, False))
    return weight_grad


def time_weight_grads(
    shapes: Sequence[DenseConvShape],
    repeats: int = 5,
    seed: int = 0,
) -> Tuple[Dict[Tuple[DenseConvShape, str], KernelTiming], Dict[
        DenseConvShape, bool]]:
    """Time both methods at each convolution on random float32
    channels-last CPU maps, one untimed call each first, then ``repeats``
    timed calls of each, taking turns.

    Args:
        shapes (Sequence[DenseConvShape]): From :func:`record_dense_convs`.
        repeats (int): Timed calls per method and convolution.
        seed (int): Of the random inputs.

    Returns:
        tuple[dict, dict]: ``(shape, method)`` to its
        :class:`~mmsecvit.analysis.attention_benchmark.KernelTiming`
        (the ``'patches'`` timing's ``max_abs_diff`` is the largest
        absolute difference to oneDNN's gradient); ``shape`` to whether
        the training step takes the patch products for it on this
        machine.
    """
    check_repeats(repeats)
    generator = torch.Generator().manual_seed(seed)
    timings, applies = {}, {}
    for shape in shapes:
        x = torch.randn(*shape.input_shape, generator=generator).contiguous(
            memory_format=torch.channels_last)
        weight = torch.randn(
            shape.out_channels, shape.input_shape[1], *shape.kernel_size,
            generator=generator).requires_grad_()
        grad = torch.randn(
            shape.input_shape[0], shape.out_channels, *shape.output_size,
            generator=generator).contiguous(memory_format=torch.channels_last)
        with torch.enable_grad():
            applies[shape] = weight_grad_by_patches_applies(x, weight)
        weight = weight.detach()
        methods = {
            'onednn':
            lambda: _onednn_weight_grad(x, grad, weight, shape),
            'patches':
            lambda: weight_grad_by_patches(x, grad, shape.kernel_size, shape.
                                           stride, shape.padding),
        }
        for name in METHODS:
            timings[(shape, name)] = KernelTiming()
        results = {name: method() for name, method in methods.items()}
        timings[(shape, 'patches')].max_abs_diff = float(
            (results['onednn'] - results['patches']).abs().max())
        for _ in range(repeats):
            for name in METHODS:
                start = time.perf_counter()
                methods[name]()
                timings[(shape, name)].times.append(time.perf_counter() -
                                                    start)
    return timings, applies


def format_conv_grad_table(shapes: Sequence[DenseConvShape],
                           timings: Dict[Tuple[DenseConvShape, str],
                                         KernelTiming],
                           applies: Dict[DenseConvShape, bool],
                           limit_gmacs: Optional[float] = None) -> str:
    """A Markdown table: one row per convolution, then the total of one
    forward pass's convolutions (time per call times the calls).

    Args:
        shapes, timings, applies: From :func:`record_dense_convs`
            and :func:`time_weight_grads`.
        limit_gmacs (float, optional): The machine's fp32 limit in GMAC/s;
            adds it to the header.
    """
    header = ('| convolution (in to out, kernel, stride, input) | calls '
              '| GMACs per call | oneDNN ms (GMAC/s) | patches ms (GMAC/s) '
              '| patches / oneDNN | taken by the training step '
              '| max abs diff |')
    lines = [header, '|' + '---|' * 8]
    totals = dict.fromkeys(METHODS, 0.0)
    chosen = 0.0
    for shape in shapes:
        gmacs = shape.macs / 1e9
        medians = {name: timings[(shape, name)].median for name in METHODS}
        cells = [
            f'{medians[name] * 1e3:.1f} ({gmacs / medians[name]:.3g})'
            for name in METHODS
        ]
        for name in METHODS:
            totals[name] += medians[name] * shape.calls
        chosen += medians['patches' if applies[shape] else
                          'onednn'] * shape.calls
        lines.append(f'| {shape} | {shape.calls} | {gmacs:.3g} '
                     f'| {cells[0]} | {cells[1]} '
                     f"| {medians['patches'] / medians['onednn']:.2f}x "
                     f"| {'yes' if applies[shape] else 'no'} "
                     f"| {timings[(shape, 'patches')].max_abs_diff:.2g} |")
    lines.append(f"| all, one forward's convolutions | | "
                 f"| {totals['onednn'] * 1e3:.1f} "
                 f"| {totals['patches'] * 1e3:.1f} "
                 f"| {totals['patches'] / totals['onednn']:.2f}x "
                 f'| {chosen * 1e3:.1f} ms as taken | |')
    table = '\n'.join(lines)
    if limit_gmacs is not None:
        table = f'fp32 limit: {limit_gmacs:.1f} GMAC/s\n\n' + table
    return table
