# Copyright (c) mmsecvit contributors. All rights reserved.
"""The dense convolution with the weight gradient by patch products
equals the module's own, values and gradients, and runs only where it
applies."""
from unittest import mock

import pytest
import torch
import torch.nn as nn

from mmsecvit.models import SecViT
from mmsecvit.models.layers import conv_norm, dense_conv
from mmsecvit.models.layers.dense_conv import (conv2d_fast_weight_grad,
                                               dense_conv2d,
                                               dense_conv_weight_grad,
                                               weight_grad_by_patches)
from mmsecvit.models.layers.switch import Switch
from mmsecvit.testing.archs import TEST_ARCH


@pytest.fixture(autouse=True)
def avx2_capability():
    """The tests below check where the path applies with 32-channel
    convolutions, which it takes on every CPU but AVX-512 ones (see
    test_avx512_cpus_take_it_from_64_input_channels): they run as on an
    AVX2 machine on any machine."""
    with mock.patch.object(
            torch.backends.cpu, 'get_cpu_capability', return_value='AVX2'):
        yield


def channels_last(*shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype).contiguous(
        memory_format=torch.channels_last)


# (in, out, kernel, stride, padding, input size): SecViT's stem and
# downsampling shapes, and odd ones (non-square kernel, asymmetric stride
# and padding, no padding, sizes the stride does not divide).
GEOMETRIES = [
    (32, 32, (3, 3), (1, 1), (1, 1), (13, 17)),
    (32, 64, (3, 3), (2, 2), (1, 1), (15, 12)),
    (40, 48, (5, 3), (2, 1), (2, 0), (19, 11)),
    (33, 35, (2, 4), (3, 2), (0, 1), (10, 13)),
]


@pytest.mark.parametrize('geometry', GEOMETRIES)
@pytest.mark.parametrize('chunk_bytes', [1, 2**12, 2**30])
def test_weight_grad_by_patches_equals_the_convolutions(geometry,
                                                        chunk_bytes):
    """float64, so any difference beyond summation order shows; chunks of
    one row, a few rows (with a shorter last chunk) and whole images."""
    cin, cout, kernel, stride, padding, size = geometry
    x = channels_last(2, cin, *size, dtype=torch.float64)
    weight = torch.randn(cout, cin, *kernel, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, weight, None, stride, padding)
    grad = channels_last(*out.shape, dtype=torch.float64, seed=1)
    expected = torch.ops.aten.convolution_backward(
        grad, x, weight, None, stride, padding, (1, 1), False, (0, 0), 1,
        (False, True, False))[1]
    with mock.patch.object(dense_conv, 'CHUNK_BYTES', chunk_bytes):
        got = weight_grad_by_patches(x, grad, kernel, stride, padding)
    assert got.shape == weight.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # Any layout of the input and the gradient.
    got = weight_grad_by_patches(x.contiguous(), grad.contiguous(), kernel,
                                 stride, padding)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def run(conv, x, grad, fn):
    leaf = x.clone().requires_grad_()
    conv.zero_grad()
    out = fn(leaf)
    out.backward(grad)
    return (out, leaf.grad, conv.weight.grad,
            None if conv.bias is None else conv.bias.grad)


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('geometry', GEOMETRIES[:3])
def test_outputs_and_gradients_equal_the_module(geometry, bias):
    cin, cout, kernel, stride, padding, size = geometry
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
    x = channels_last(2, cin, *size)
    grad = channels_last(*conv(x).shape, seed=1)
    with mock.patch.object(
            dense_conv, 'weight_grad_by_patches',
            wraps=dense_conv.weight_grad_by_patches) as spy:
        fast = run(conv, x, grad, lambda t: dense_conv2d(conv, t))
    assert spy.call_count == 1
    with dense_conv_weight_grad(False):
        plain = run(conv, x, grad, conv)
    torch.testing.assert_close(fast[0], plain[0], rtol=0, atol=0)
    torch.testing.assert_close(fast[1], plain[1], rtol=0, atol=0)
    torch.testing.assert_close(fast[2], plain[2], rtol=1e-5, atol=1e-4)
    if bias:
        torch.testing.assert_close(fast[3], plain[3], rtol=1e-5, atol=1e-4)


def test_an_input_without_gradient_gets_none():
    """The image entering the stem: only the weight's gradient is
    computed."""
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = channels_last(1, 32, 8, 9)
    with mock.patch.object(dense_conv, '_DenseConv2d',
                           wraps=dense_conv._DenseConv2d) as function:
        dense_conv2d(conv, x).sum().backward()
    function.apply.assert_called_once()
    assert conv.weight.grad is not None and x.grad is None


@pytest.mark.parametrize('case', [
    'float64', 'contiguous', 'no_grad', 'frozen', '1x1', 'few_channels',
    'grouped', 'dilated', 'autocast', 'padding_mode', 'same_padding',
    'hooked', 'other_device', 'switched_off', 'compiling'
])
def test_other_cases_run_the_module(case):
    kwargs = dict(padding=1)
    x = channels_last(2, 32, 9, 10)
    context = torch.enable_grad()
    if case == 'float64':
        x = x.double()
    elif case == 'contiguous':
        x = x.contiguous()
    elif case == 'no_grad':
        context = torch.no_grad()
    elif case == '1x1':
        kwargs = dict(kernel_size=1)
    elif case == 'few_channels':
        x = channels_last(2, 16, 9, 10)
    elif case == 'grouped':
        kwargs['groups'] = 2
    elif case == 'dilated':
        kwargs['dilation'] = 2
    elif case == 'autocast':
        context = torch.autocast('cpu', dtype=torch.bfloat16)
    elif case == 'padding_mode':
        kwargs['padding_mode'] = 'reflect'
    elif case == 'same_padding':
        kwargs['padding'] = 'same'
    elif case == 'switched_off':
        context = dense_conv_weight_grad(False)
    conv = nn.Conv2d(x.shape[1], 32, **{'kernel_size': 3, **kwargs})
    conv = conv.to(x.dtype)
    if case == 'frozen':
        conv.requires_grad_(False)
    elif case == 'other_device':  # stands for a GPU: cuDNN's own kernels
        conv, x = conv.to('meta'), x.to('meta')
    elif case == 'hooked':
        calls = []
        conv.register_forward_hook(lambda *args: calls.append(1))
    compiling = mock.patch.object(
        torch.compiler, 'is_compiling', return_value=case == 'compiling')
    with context, compiling, mock.patch.object(dense_conv,
                                               '_DenseConv2d') as function:
        out = dense_conv2d(conv, x)
        # The functional form knows nothing of the module's hooks and
        # padding mode; every other case applies to it too.
        if case not in ('hooked', 'padding_mode'):
            assert conv2d_fast_weight_grad(
                x, conv.weight, conv.bias, conv.stride, conv.padding,
                conv.dilation, conv.groups).shape == out.shape
    function.apply.assert_not_called()
    if case == 'hooked':
        assert calls == [1]
    assert out.shape == conv(x).shape


@pytest.mark.parametrize('capability,in_channels,applies', [
    ('AVX2', 32, True),
    ('DEFAULT', 32, True),
    ('AVX512', 32, False),
    ('AVX512', 63, False),
    ('AVX512', 64, True),
])
def test_avx512_cpus_take_it_from_64_input_channels(capability, in_channels,
                                                    applies):
    """oneDNN's AVX-512 weight-gradient kernel is the faster one with 32
    input channels; the output channels' minimum stays 32."""
    conv = nn.Conv2d(in_channels, 32, 3, padding=1)
    x = channels_last(2, in_channels, 9, 10)
    with mock.patch.object(torch.backends.cpu, 'get_cpu_capability',
                           return_value=capability), mock.patch.object(
                               dense_conv, 'weight_grad_by_patches',
                               wraps=weight_grad_by_patches) as spy:
        expected = dense_conv.MIN_IN_CHANNELS_AVX512 if capability == (
            'AVX512') else dense_conv.MIN_CHANNELS
        assert dense_conv.min_in_channels() == expected
        dense_conv2d(conv, x).sum().backward()
    assert spy.call_count == int(applies)
    assert conv.weight.grad is not None


def grads_on_and_off(module, loss, calls):
    """The gradients of ``module``'s parameters after ``loss().backward()``
    with the path switched on (checking that it ran ``calls`` times) and
    off (checking that it did not run)."""
    grads = []
    for enabled in (True, False):
        module.zero_grad()
        with dense_conv_weight_grad(enabled), mock.patch.object(
                dense_conv, 'weight_grad_by_patches',
                wraps=dense_conv.weight_grad_by_patches) as spy:
            loss().backward()
        assert spy.call_count == (calls if enabled else 0)
        grads.append([p.grad.clone() for p in module.parameters()])
    return grads


@pytest.mark.parametrize('norm_eval', [False, True])
def test_conv_norm_takes_it_with_batch_and_frozen_statistics(norm_eval):
    """conv_norm in training: with batch statistics (the module runs) and
    with running statistics folded into the kernel (norm_eval), whose
    gradient reaches the convolution's weight through the fold."""
    conv = nn.Conv2d(32, 48, 3, 2, 1)
    norm = nn.BatchNorm2d(48)
    norm.train(not norm_eval)
    x = channels_last(2, 32, 11, 12)
    fast, plain = grads_on_and_off(
        conv, lambda: conv_norm(conv, norm, x, gelu=True).sum(), calls=1)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-4)


def test_secvit_stem_and_downsampling_take_it():
    """In SecViT's training step the dense convolutions with at least 32
    channels take the path (here the three downsamplings; the stem of the
    test arch has 16 channels), and the backbone's gradients match
    oneDNN's."""
    model = SecViT(arch=TEST_ARCH, drop_path_rate=0.).train()
    dense = [
        m for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups == 1
        and m.kernel_size != (1, 1) and min(m.in_channels, m.out_channels)
        >= dense_conv.MIN_CHANNELS
    ]
    assert dense, 'the test arch has no dense convolution to check'
    x = torch.rand(1, 3, 64, 80)
    fast, plain = grads_on_and_off(
        model, lambda: sum(out.sum() for out in model(x)), calls=len(dense))
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)


def test_the_switch_restores_the_setting_also_on_errors():
    switch = Switch()
    with pytest.raises(RuntimeError):
        with switch.set(False):
            assert not switch
            with switch.set(True):
                assert switch
            assert not switch
            raise RuntimeError
    assert switch.enabled
