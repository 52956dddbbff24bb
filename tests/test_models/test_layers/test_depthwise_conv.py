# Copyright (c) mmsecvit contributors. All rights reserved.
"""The depth-wise convolution with the assembled weight gradient equals
the module's own, values and gradients."""
from unittest import mock

import pytest
import torch
import torch.nn as nn

from mmsecvit.models.layers import depthwise_conv
from mmsecvit.models.layers.depthwise_conv import (
    _window_starts, depthwise_conv2d, depthwise_weight_grad_by_3x3)


@pytest.mark.parametrize('kernel, starts', [(3, [0]), (5, [0, 2]),
                                            (7, [0, 2, 4]), (9, [0, 2, 4, 6]),
                                            (11, [0, 2, 4, 6, 8])])
def test_windows_cover_every_tap(kernel, starts):
    assert _window_starts(kernel) == starts
    covered = {s + i for s in starts for i in range(3)}
    assert covered == set(range(kernel))


def inputs(channels=6, size=(9, 11), channels_last=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, *size, generator=gen)
    grad = torch.randn(2, channels, *size, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        grad = grad.contiguous(memory_format=torch.channels_last)
    return x, grad


@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('kernel', [(5, 5), (3, 5), (7, 5), (3, 3)])
def test_assembled_weight_grad_equals_the_convolutions(kernel, channels_last):
    x, grad = inputs(channels_last=channels_last)
    conv = nn.Conv2d(6, 6, kernel, padding=(kernel[0] // 2, kernel[1] // 2),
                     groups=6)
    expected = torch.ops.aten.convolution_backward(
        grad, x, conv.weight, None, (1, 1), conv.padding, (1, 1), False,
        (0, 0), 6, (False, True, False))[1]
    got = depthwise_weight_grad_by_3x3(x, grad, kernel)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('bias', [True, False])
def test_outputs_and_gradients_equal_the_module(bias):
    conv = nn.Conv2d(6, 6, 5, padding=2, groups=6, bias=bias)
    x, grad = inputs()
    grads = []
    for fn in (conv, lambda t: depthwise_conv2d(conv, t)):
        leaf = x.clone().requires_grad_()
        conv.zero_grad()
        out = fn(leaf)
        out.backward(grad)
        grads.append((out, leaf.grad, conv.weight.grad,
                      conv.bias.grad if bias else None))
    (out, gx, gw, gb), (out2, gx2, gw2, gb2) = grads
    torch.testing.assert_close(out2, out, rtol=0, atol=0)
    torch.testing.assert_close(gx2, gx, rtol=0, atol=0)
    torch.testing.assert_close(gw2, gw, rtol=1e-5, atol=1e-4)
    if bias:
        torch.testing.assert_close(gb2, gb, rtol=1e-5, atol=1e-4)


def test_the_assembled_gradient_is_used_where_it_applies():
    conv = nn.Conv2d(6, 6, 5, padding=2, groups=6)
    x, grad = inputs()
    with mock.patch.object(depthwise_conv, 'depthwise_weight_grad_by_3x3',
                           wraps=depthwise_weight_grad_by_3x3) as spy:
        depthwise_conv2d(conv, x).backward(grad)
    assert spy.call_count == 1


@pytest.mark.parametrize('case', [
    'float64', 'no_grad', 'frozen', '3x3', 'strided', 'autocast', 'padding',
    'hooked', 'other_device'
])
def test_other_cases_run_the_module(case):
    conv = nn.Conv2d(6, 6, 5, padding=2, groups=6)
    x, _ = inputs()
    context = torch.enable_grad()
    if case == 'float64':
        conv, x = conv.double(), x.double()
    elif case == 'no_grad':
        context = torch.no_grad()
    elif case == 'frozen':
        conv.requires_grad_(False)
    elif case == '3x3':
        conv = nn.Conv2d(6, 6, 3, padding=1, groups=6)
    elif case == 'strided':
        conv = nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=6)
    elif case == 'autocast':
        context = torch.autocast('cpu', dtype=torch.bfloat16)
    elif case == 'padding':
        conv = nn.Conv2d(6, 6, 5, padding=2, groups=6,
                         padding_mode='reflect')
    elif case == 'other_device':  # stands for a GPU: cuDNN's own kernels
        conv, x = conv.to('meta'), x.to('meta')
    elif case == 'hooked':
        calls = []
        conv.register_forward_hook(lambda *args: calls.append(1))
    with context, mock.patch.object(
            depthwise_conv, '_DepthwiseConv2d') as function:
        out = depthwise_conv2d(conv, x)
    function.apply.assert_not_called()
    if case == 'hooked':
        assert calls == [1]
    assert out.shape == conv(x).shape
