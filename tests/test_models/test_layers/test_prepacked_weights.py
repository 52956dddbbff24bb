# Copyright (c) mmsecvit contributors. All rights reserved.
"""Convolutions of small maps read oneDNN-prepacked weights in float32 CPU
inference: the same results as F.conv2d, one reorder per weight and input
shape, and the plain convolution wherever a gradient, a graph or another
device or dtype is involved."""
from unittest import mock

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsecvit.models import SecViT
from mmsecvit.models.layers import cpu_fusion as fusion_module
from mmsecvit.models.layers import onednn_fusion
from mmsecvit.models.layers.cpu_fusion import conv2d, prepacking_applies
from mmsecvit.testing import arch_with, randomize_weights

needs_onednn = pytest.mark.skipif(
    not fusion_module._OPS_AVAILABLE,
    reason='this torch has no oneDNN convolution operators')

_CACHE = '_derived_param_cache'


def count_reorders():
    """Patch oneDNN's weight reorder with a counting wrapper."""
    return mock.patch.object(
        torch.ops.mkldnn,
        '_reorder_convolution_weight',
        wraps=torch.ops.mkldnn._reorder_convolution_weight)


@needs_onednn
def test_prepacking_applies_only_to_float32_cpu_inference_on_small_maps(
        onednn_off_contexts):
    x = torch.rand(1, 8, 64, 64)
    assert not prepacking_applies(x)  # gradients recorded
    with torch.no_grad():
        assert prepacking_applies(x)
        # From MAX_PREPACKED_NUMEL values on, ordinary weights.
        big = torch.empty(1, 1, 1, fusion_module.MAX_PREPACKED_NUMEL)
        assert not prepacking_applies(big)
        assert prepacking_applies(big[..., 1:])
        assert not prepacking_applies(x.double())
        assert not prepacking_applies(x.half())
        for name, context in onednn_off_contexts.items():
            with context():
                assert not prepacking_applies(x), name
        assert prepacking_applies(x)
        assert not prepacking_applies(torch.empty(1, 8, 64, 64,
                                                  device='meta'))


CONVS = {
    '1x1 expand': dict(in_channels=16, out_channels=48, kernel_size=1),
    '1x1 no bias': dict(
        in_channels=48, out_channels=16, kernel_size=1, bias=False),
    'depth-wise 3x3': dict(
        in_channels=16, out_channels=16, kernel_size=3, padding=1,
        groups=16),
    'depth-wise 5x5': dict(
        in_channels=16, out_channels=16, kernel_size=5, padding=2,
        groups=16),
    'dense 3x3 stride 2': dict(
        in_channels=16, out_channels=32, kernel_size=3, stride=2, padding=1),
}


@needs_onednn
@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('name', list(CONVS))
def test_a_prepacked_convolution_equals_f_conv2d(name, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(**CONVS[name]).eval()
    x = torch.randn(2, conv.in_channels, 11, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = (conv.weight, conv.bias, conv.stride, conv.padding,
            conv.dilation, conv.groups)
    with torch.no_grad():
        expected = F.conv2d(x, *args)
        out = conv2d(x, *args, module=conv)
    if channels_last:
        # The prepacked weight was used, and kept.
        packed = getattr(conv, _CACHE)['onednn_weight'][2][0]
        assert packed.is_mkldnn
    else:
        # oneDNN's kernel would answer an NCHW map in channels-last.
        assert _CACHE not in conv.__dict__
    torch.testing.assert_close(
        out, expected, rtol=0, atol=1e-5 * expected.abs().max())
    assert out.shape == expected.shape
    for memory_format in (torch.contiguous_format, torch.channels_last):
        assert (out.is_contiguous(memory_format=memory_format) ==
                expected.is_contiguous(memory_format=memory_format))


@needs_onednn
def test_one_reorder_per_weight_and_input_shape():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 24, 1).eval()
    x = torch.randn(1, 8, 10, 12).contiguous(
        memory_format=torch.channels_last)

    def run(inputs):
        with torch.no_grad():
            return conv2d(inputs, conv.weight, conv.bias, module=conv)

    with count_reorders() as reorder:
        run(x)
        run(x)
        assert reorder.call_count == 1
        run(x[:, :, :7])  # another input shape: the layout may differ
        assert reorder.call_count == 2
        run(x[:, :, :7])
        assert reorder.call_count == 2
        # A changed weight is packed again, and its result is the new one.
        with torch.no_grad():
            conv.weight.mul_(2)
        out = run(x)
        assert reorder.call_count == 3
    torch.testing.assert_close(
        out, F.conv2d(x, conv.weight, conv.bias).detach(), rtol=1e-5,
        atol=1e-5)


@needs_onednn
def test_gradients_and_other_dtypes_take_the_plain_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    with count_reorders() as reorder:
        out = conv2d(x, conv.weight, conv.bias, 1, 1, module=conv)
        assert out.grad_fn is not None  # autograd's own convolution
        with torch.no_grad():
            conv.double()
            out = conv2d(x.double(), conv.weight, conv.bias, 1, 1,
                         module=conv)
            assert out.dtype == torch.float64
            conv.float()
            # Without a module nothing can keep the packed weight.
            conv2d(x, conv.weight, conv.bias, 1, 1)
            # Padding given as a string: F.conv2d's own handling.
            conv2d(x, conv.weight, conv.bias, 1, 'same', module=conv)
    assert reorder.call_count == 0
    assert _CACHE not in conv.__dict__


def global_attention_secvit() -> SecViT:
    """A small SecViT in eval mode whose outputs compare across float32
    paths: global attention in every stage (no ranking whose rounding could
    send a token to another cluster), and two heads at least (with one,
    LePE reads v as a strided view of qkv, which takes the plain
    convolution)."""
    torch.manual_seed(0)
    model = SecViT(arch=arch_with(
        num_heads=[2, 2, 4, 8], num_clusters=[-1, -1, -1, -1]))
    randomize_weights(model)
    return model.eval()


@needs_onednn
def test_secvit_inference_packs_each_convolution_once():
    model = global_attention_secvit()
    x = torch.rand(1, 3, 64, 96)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad(), count_reorders() as reorder:
        first = model(x)
        assert reorder.call_count == len(convs)
        second = model(x)
        assert reorder.call_count == len(convs)
        with onednn_fusion(False):
            plain = model(x)
    for a, b, c in zip(first, second, plain):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=0, atol=1e-5 * c.abs().max())
    # Training mode drops the packed weights with the other caches.
    model.train()
    assert all(_CACHE not in conv.__dict__ for conv in convs)


@needs_onednn
@pytest.mark.parametrize('fused', [True, False])
def test_gelu_and_sum_convolutions_read_the_prepacked_weight(fused):
    torch.manual_seed(0)
    x = torch.randn(1, 16, 9, 11).contiguous(
        memory_format=torch.channels_last)
    fc = nn.Conv2d(16, 48, 1).eval()
    lepe = nn.Conv2d(16, 16, 5, padding=2, groups=16).eval()
    identity = torch.randn(1, 16, 9, 11).contiguous(
        memory_format=torch.channels_last)
    min_numel = 0 if fused else 1 << 40
    with torch.no_grad(), onednn_fusion(True, min_numel=min_numel):
        activated = fusion_module.conv2d_gelu(
            x, fc.weight, fc.bias, module=fc)
        summed = fusion_module.conv2d_add_(
            identity.clone(), x, lepe.weight, lepe.bias, 2, 16, module=lepe)
    for conv in (fc, lepe):
        assert getattr(conv, _CACHE)['onednn_weight'][2][0].is_mkldnn
    with torch.no_grad():
        torch.testing.assert_close(
            activated, F.gelu(fc(x)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            summed, identity + lepe(x), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_inference_mode_then_no_grad_then_gradients():
    # Weights derived under inference_mode are inference tensors (no
    # version counter) and the sources of the prepacked weights.
    model = global_attention_secvit()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        first = model(x)
    with torch.no_grad():
        second = model(x)
    third = model(x)
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b)
        torch.testing.assert_close(
            c.detach(), a, rtol=0, atol=1e-5 * a.abs().max())
