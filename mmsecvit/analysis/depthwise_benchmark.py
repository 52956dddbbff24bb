# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time a backbone's depth-wise convolutions in the channels-last layout
SecViT runs them in, against the same convolutions on contiguous (NCHW)
maps, at the shapes it uses.

SecViT keeps its maps channels-last from the stem on: the attention reads
the q, k and v of a token as one row of the channels-last ``qkv`` map.
Its depth-wise convolutions (the position encoding's and the FFN's 3x3,
LePE's 5x5) therefore run on channels-last maps too, and which layout a
library's depth-wise kernel prefers differs between libraries, devices and
dtypes. This measures it on the machine at hand:

1. :func:`record_depthwise_convs` runs the backbone once and records every
   depth-wise convolution (``groups`` equal to the input's channels) with
   its input shape.
2. :func:`time_depthwise_layouts` times each one, forward alone and forward
   with the backward (input and weight gradients), in three ways
   (:data:`LAYOUTS`): on a channels-last map (``'channels_last'``, as
   SecViT runs it), on a contiguous map (``'contiguous'``: the kernel
   alone), and on a channels-last map converted to contiguous and back
   (``'contiguous_copies'``: what running that convolution contiguously
   would cost inside SecViT, whose neighbouring layers stay
   channels-last). Outputs and gradients are compared with
   ``'channels_last'``'s.
3. :func:`format_depthwise_table` reports each time, its ratio to
   channels-last and the totals of one forward pass (time per call times
   the calls).

The convolutions are timed as :func:`torch.nn.functional.conv2d`, the
library's own kernels: SecViT's CPU fusions and its CPU weight gradient of
LePE's 5x5 kernel (:mod:`~mmsecvit.models.layers.depthwise_conv`) are not
part of it.
"""
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from mmsecvit.analysis.attention_benchmark import KernelTiming
from mmsecvit.analysis.benchmark import check_repeats, synchronize
from mmsecvit.analysis.compile_check import max_abs_diff
from mmsecvit.models.layers import onednn_fusion
from mmsecvit.utils.errors import ConfigValueError

#: The three ways of running a convolution, in table order.
LAYOUTS = ('channels_last', 'contiguous', 'contiguous_copies')

#: What is timed: the forward alone, and the forward with the backward
#: (the input's, the weight's and the bias's gradients).
PASSES = ('forward', 'forward_backward')


@dataclass(frozen=True)
class DepthwiseConvShape:
    """One depth-wise convolution of a forward pass: its input (B, C, H, W),
    kernel, stride, padding and dilation, with the number of calls."""

    input_shape: Tuple[int, int, int, int]
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    calls: int = 1

    @property
    def channels(self) -> int:
        return self.input_shape[1]

    def __str__(self) -> str:
        batch, channels, height, width = self.input_shape
        return (f'{channels} channels, {self.kernel_size[0]}x'
                f'{self.kernel_size[1]} stride {self.stride[0]}, '
                f'{batch}x{height}x{width}')


class _RecordDepthwise(TorchFunctionMode):
    """Counts the depth-wise calls of ``F.conv2d`` (modules' and
    functional ones alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            names = ('input', 'weight', 'bias', 'stride', 'padding',
                     'dilation', 'groups')
            call = dict(stride=1, padding=0, dilation=1, groups=1)
            call.update(zip(names, args))
            call.update(kwargs)
            x = call['input']
            if (call['groups'] > 1 and call['groups'] == x.shape[1]
                    and not isinstance(call['padding'], str)):
                self.shapes[(tuple(x.shape), tuple(call['weight'].shape[2:]),
                             _pair(call['stride']), _pair(call['padding']),
                             _pair(call['dilation']))] += 1
        return func(*args, **kwargs)


def record_depthwise_convs(model: nn.Module,
                           inputs: torch.Tensor) -> List[DepthwiseConvShape]:
    """The depth-wise convolutions of one forward pass of ``model``.

    The CPU fusions (:func:`~mmsecvit.models.layers.onednn_fusion`) are
    switched off while recording, so that every convolution is a call of
    ``F.conv2d``.

    Args:
        model (nn.Module): Run once, without gradients, in its current
            mode.
        inputs (Tensor): Its input, e.g. (B, 3, H, W).

    Returns:
        list[DepthwiseConvShape]: One entry per distinct shape, with its
        number of calls; in the order of the forward pass.
    """
    recorder = _RecordDepthwise()
    with torch.no_grad(), onednn_fusion(False), recorder:
        model(inputs)
    return [
        DepthwiseConvShape(*key, calls=calls)
        for key, calls in recorder.shapes.items()
    ]


def _convolution(shape: DepthwiseConvShape, layout: str, weight: torch.Tensor,
                 bias: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The convolution of ``shape`` on a channels-last map, run in
    ``layout``; its output is channels-last except for ``'contiguous'``."""

    def conv(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, bias, shape.stride, shape.padding,
                        shape.dilation, shape.channels)

    if layout != 'contiguous_copies':
        return conv  # the input is in ``layout`` already

    def with_copies(x: torch.Tensor) -> torch.Tensor:
        return conv(
            x.contiguous()).contiguous(memory_format=torch.channels_last)

    return with_copies


def _run(conv: Callable[[torch.Tensor], torch.Tensor], pass_: str,
         x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
         grad: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """One call of ``conv`` (from :func:`_convolution`): the output, and for
    ``'forward_backward'`` also the gradients of the input, the weight and
    the bias."""
    if pass_ == 'forward':
        with torch.no_grad():
            return conv(x),
    with torch.enable_grad():
        out = conv(x)
        grads = torch.autograd.grad(out, (x, weight, bias), grad)
    return (out.detach(), *grads)


def time_depthwise_layouts(
    shapes: Sequence[DepthwiseConvShape],
    passes: Sequence[str] = PASSES,
    repeats: int = 5,
    device: str = 'cpu',
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Dict[Tuple[DepthwiseConvShape, str, str], KernelTiming]:
    """Time each convolution in each of :data:`LAYOUTS`, one untimed call
    each first, then ``repeats`` timed calls of each, taking turns.

    Args:
        shapes (Sequence[DepthwiseConvShape]): From
            :func:`record_depthwise_convs`.
        passes (Sequence[str]): From :data:`PASSES`.
        repeats (int): Timed calls per layout, pass and convolution.
        device (str): Where to run.
        dtype (torch.dtype): Of the maps and the weights.
        seed (int): Of the random inputs.

    Returns:
        dict: ``(shape, layout, pass)`` to its
        :class:`~mmsecvit.analysis.attention_benchmark.KernelTiming`, whose
        ``max_abs_diff`` is the largest absolute difference of the output
        (and of the gradients) to ``'channels_last'``'s.
    """
    unknown = [name for name in passes if name not in PASSES]
    if unknown:
        raise ConfigValueError(
            f'Unknown passes {unknown}; choose from {list(PASSES)}.')
    check_repeats(repeats)
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    timings = {}
    for shape in shapes:
        channels = shape.channels
        x = torch.randn(*shape.input_shape, generator=generator)
        weight = torch.randn(
            channels, 1, *shape.kernel_size, generator=generator) * 0.1
        bias = torch.randn(channels, generator=generator)
        weight, bias = (
            t.to(device, dtype).requires_grad_() for t in (weight, bias))
        with torch.no_grad():
            grad = torch.randn(
                *F.conv2d(x,
                          weight.cpu().float(), None, shape.stride,
                          shape.padding, shape.dilation, channels).shape,
                generator=generator)
        # The map and the output's gradient in each layout's own memory
        # format (channels-last for the run with copies, whose convolution
        # sits between two conversions).
        maps, grads = {}, {}
        for layout in LAYOUTS:
            memory_format = (
                torch.contiguous_format
                if layout == 'contiguous' else torch.channels_last)
            maps[layout], grads[layout] = (
                t.to(device, dtype).contiguous(memory_format=memory_format)
                for t in (x, grad))
            maps[layout].requires_grad_()
        convs = {
            layout: _convolution(shape, layout, weight, bias)
            for layout in LAYOUTS
        }
        for pass_ in passes:
            runs = {
                layout: partial(_run, convs[layout], pass_, maps[layout],
                                weight, bias, grads[layout])
                for layout in LAYOUTS
            }
            reference = None
            for layout in LAYOUTS:
                timing = timings[(shape, layout, pass_)] = KernelTiming()
                results = runs[layout]()
                if reference is None:
                    reference = results
                timing.max_abs_diff = max_abs_diff(results, reference)
            for _ in range(repeats):
                for layout in LAYOUTS:
                    synchronize(device)
                    start = time.perf_counter()
                    runs[layout]()
                    synchronize(device)
                    timings[(shape, layout,
                             pass_)].times.append(time.perf_counter() - start)
    return timings


def format_depthwise_table(
        shapes: Sequence[DepthwiseConvShape],
        timings: Dict[Tuple[DepthwiseConvShape, str, str],
                      KernelTiming]) -> str:
    """A Markdown table: one row per convolution and pass, then one total
    row per pass (time per call times the calls of one forward pass).

    Args:
        shapes (Sequence[DepthwiseConvShape]): The shapes timed.
        timings (dict): From :func:`time_depthwise_layouts`.
    """
    passes = list(dict.fromkeys(pass_ for _, _, pass_ in timings))
    header = ('| depth-wise convolution (channels, kernel, stride, input) '
              '| calls | pass | channels-last ms | contiguous ms '
              '| contiguous with copies ms | max abs diff |')
    lines = [header, '|' + '---|' * 7]

    def cells(seconds: Dict[str, float]) -> str:
        base = seconds['channels_last']
        return ' | '.join([f'{base * 1e3:.3f}'] + [
            f'{seconds[layout] * 1e3:.3f} ({seconds[layout] / base:.2f}x)'
            for layout in LAYOUTS[1:]
        ])

    for shape in shapes:
        for pass_ in passes:
            seconds = {
                layout: timings[(shape, layout, pass_)].median
                for layout in LAYOUTS
            }
            diff = max(timings[(shape, layout, pass_)].max_abs_diff
                       for layout in LAYOUTS)
            lines.append(f'| {shape} | {shape.calls} | {pass_} '
                         f'| {cells(seconds)} | {diff:.1e} |')
    for pass_ in passes:
        seconds = {
            layout:
            sum(timings[(shape, layout, pass_)].median * shape.calls
                for shape in shapes)
            for layout in LAYOUTS
        }
        lines.append(f'| all, one forward pass | '
                     f'{sum(s.calls for s in shapes)} | {pass_} '
                     f'| {cells(seconds)} | |')
    return '\n'.join(lines)
