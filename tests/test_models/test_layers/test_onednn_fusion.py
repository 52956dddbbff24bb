# Copyright (c) mmsecvit contributors. All rights reserved.
"""The fused CPU inference kernels compute what the plain operations do, are
used only where they apply, and the inference path of the blocks (residual
sums and layer scales inside the last convolutions, RoPE in place) equals
the training path."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmsecvit.models.layers.cpu_fusion as fusion_module
from mmsecvit.models import SecViT
from mmsecvit.models.backbones.secvit import ConvStem, SecViTBlock
from mmsecvit.models.layers import (conv2d_add_, conv2d_gelu, fusion_applies,
                                    onednn_fusion)
from mmsecvit.models.layers.rope import RoPE2d
from mmsecvit.models.layers.sec_attention import rope_qk, rope_qk_
from mmsecvit.testing import TEST_ARCH, randomize_weights

needs_onednn = pytest.mark.skipif(
    not fusion_module._OPS_AVAILABLE,
    reason='this torch has no oneDNN fused convolution operators')


def channels_last(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype).contiguous(
        memory_format=torch.channels_last)


@needs_onednn
def test_fusion_applies_only_to_float32_cpu_inference(onednn_off_contexts):
    x = torch.rand(1, 8, 128, 128)  # 2**17 values
    assert fusion_applies(x) is False  # gradients recorded
    with torch.no_grad():
        assert fusion_applies(x)
        # Maps of any size by default (their weights are prepacked), a
        # smallest size where one is set.
        assert fusion_applies(x[:, :1, :1, :1])
        with onednn_fusion(True, min_numel=1 << 17):
            assert fusion_applies(x)
            assert not fusion_applies(x[:, :, :127])
        assert fusion_applies(x[:, :, :127])
        assert not fusion_applies(x.double())
        assert not fusion_applies(x.half())
        for name, context in onednn_off_contexts.items():
            with context():
                assert not fusion_applies(x), name
        assert fusion_applies(x)
        # A tensor on another device (what a GPU would hold).
        meta = torch.empty(1, 8, 128, 128, device='meta')
        assert not fusion_applies(meta)


@needs_onednn
@pytest.mark.parametrize('stride,padding,groups', [(1, 0, 1), (2, 1, 1),
                                                   (1, 1, 8)])
def test_conv2d_gelu_equals_gelu_of_the_convolution(stride, padding, groups):
    torch.manual_seed(0)
    x = channels_last(2, 8, 11, 13)
    weight = torch.randn(16, 8 // groups, 2 * padding + 1, 2 * padding + 1)
    bias = torch.randn(16)
    expected = F.gelu(F.conv2d(x, weight, bias, stride, padding, 1, groups))
    with torch.no_grad(), onednn_fusion(True, min_numel=0):
        fused = conv2d_gelu(x, weight, bias, stride, padding, 1, groups)
        with onednn_fusion(False):
            plain = conv2d_gelu(x, weight, bias, stride, padding, 1, groups)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, expected, rtol=1e-6, atol=1e-6)
    # With gradients, ordinary autograd operations.
    weight.requires_grad_(True)
    out = conv2d_gelu(x, weight, bias, stride, padding, 1, groups)
    out.sum().backward()
    assert weight.grad is not None


@needs_onednn
@pytest.mark.parametrize('kernel,groups', [(1, 1), (5, 8)])
def test_conv2d_add_sums_in_place_only_without_gradients(kernel, groups):
    torch.manual_seed(0)
    x = channels_last(2, 8, 9, 7)
    weight = torch.randn(8, 8 // groups, kernel, kernel)
    bias = torch.randn(8)
    identity = channels_last(2, 8, 9, 7)
    expected = identity + F.conv2d(x, weight, bias, 1, kernel // 2, 1,
                                   groups)
    for fused in (True, False):
        with torch.no_grad(), onednn_fusion(fused, min_numel=0):
            target = identity.clone()
            out = conv2d_add_(target, x, weight, bias, kernel // 2, groups)
        assert out.data_ptr() == target.data_ptr()  # written in place
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

    # With gradients: a new tensor, ``identity`` untouched, gradients flow.
    identity_copy = identity.clone().requires_grad_(True)
    before = identity_copy.detach().clone()
    out = conv2d_add_(identity_copy, x, weight.requires_grad_(True), bias,
                      kernel // 2, groups)
    assert out.data_ptr() != identity_copy.data_ptr()
    assert torch.equal(identity_copy.detach(), before)
    out.sum().backward()
    assert identity_copy.grad is not None and weight.grad is not None


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_rope_in_place_equals_rope(dtype):
    torch.manual_seed(0)
    heads, d, h, w = 2, 8, 5, 6
    sin, cos = RoPE2d(heads * d, heads)((h, w))
    # (B, heads, N, 3, d) viewed from a token-major buffer, as in the model.
    buffer = torch.randn(2, h * w, heads, 3, d, dtype=dtype)
    qkv = buffer.transpose(1, 2)
    expected = rope_qk(qkv, sin, cos)
    # The same complex products; vectorised and strided kernels may round
    # the last bit differently.
    tol = dict(rtol=0, atol=4 * torch.finfo(dtype).eps * expected.abs().max())
    with torch.no_grad():
        out = rope_qk_(qkv.clone(), sin, cos)
    torch.testing.assert_close(out, expected, **tol)
    # v untouched, q and k overwritten where they are.
    with torch.no_grad():
        target = qkv.clone()
        out = rope_qk_(target, sin, cos)
    assert out.data_ptr() == target.data_ptr()
    assert torch.equal(out[..., 2, :], qkv[..., 2, :])
    # With gradients recorded it leaves its input alone.
    source = qkv.clone().requires_grad_(True)
    out = rope_qk_(source, sin, cos)
    assert torch.equal(source.detach(), qkv)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def block_outputs(block, x, sin, cos):
    """The block's output on the training path (gradients recorded) and on
    the inference path (no gradients), from the same input."""
    block.eval()
    with torch.enable_grad():
        train_path = block(x.clone(), sin, cos).detach()
    with torch.no_grad():
        inference_path = block(x.clone(), sin, cos)
    return train_path, inference_path


@pytest.mark.parametrize('layer_scale', [False, True])
@pytest.mark.parametrize('num_clusters', [3, -1])
def test_inference_path_of_a_block_equals_its_training_path(
        layer_scale, num_clusters):
    torch.manual_seed(0)
    block = SecViTBlock(
        32,
        2,
        num_clusters,
        layer_scale=layer_scale,
        layer_scale_init=0.5,
        cluster_mode='num_clusters').double()
    randomize_weights(block)
    if layer_scale:
        with torch.no_grad():
            block.gamma_1.uniform_(0.2, 2)
            block.gamma_2.uniform_(0.2, 2)
    x = channels_last(2, 32, 9, 7, dtype=torch.float64)
    sin, cos = RoPE2d(32, 2)((9, 7))
    train_path, inference_path = block_outputs(block, x, sin.double(),
                                               cos.double())
    torch.testing.assert_close(
        inference_path, train_path, rtol=0, atol=1e-10)

    # float32: the fused kernels where they apply, equal up to rounding.
    block.float()
    x = x.float()
    with onednn_fusion(True, min_numel=0):  # fuse even these small maps
        train_path, inference_path = block_outputs(block, x, sin, cos)
    with torch.no_grad(), onednn_fusion(False):
        plain = block(x.clone(), sin, cos)
    scale = train_path.abs().max()
    torch.testing.assert_close(
        inference_path, train_path, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(plain, train_path, rtol=0, atol=1e-5 * scale)


def test_the_input_of_a_block_is_not_overwritten():
    torch.manual_seed(0)
    block = SecViTBlock(32, 2, 3).eval()
    randomize_weights(block)
    x = channels_last(1, 32, 8, 8)
    before = x.clone()
    sin, cos = RoPE2d(32, 2)((8, 8))
    with torch.no_grad():
        block(x, sin, cos)
    assert torch.equal(x, before)


def test_fused_stem_equals_the_modules():
    torch.manual_seed(0)
    stem = ConvStem(3, 32, dict(type='BN'))
    randomize_weights(stem)
    stem.eval()
    x = torch.randn(2, 3, 37, 41).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad(), onednn_fusion(True, min_numel=0):
        fused = stem(x)
        expected = stem.proj(x)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_whole_model_inference_equals_the_training_path_in_float64():
    """No fused kernel runs in float64; this checks the inference path's
    arithmetic (residuals and layer scales inside the convolutions)."""
    torch.manual_seed(0)
    arch = dict(TEST_ARCH, layer_scales=[False, True, False, True])
    model = SecViT(arch=arch).double().eval()
    randomize_weights(model)
    x = torch.rand(2, 3, 70, 90, dtype=torch.float64)
    with torch.no_grad():
        inference = model(x)
    train_path = model(x)
    for a, b in zip(inference, train_path):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-10)


def test_fusion_can_be_switched_off_and_back_on():
    assert fusion_module._enabled
    assert fusion_module._min_numel == fusion_module.MIN_FUSED_NUMEL
    with onednn_fusion(False):
        assert not fusion_module._enabled
        with onednn_fusion(True, min_numel=5):
            assert fusion_module._enabled
            assert fusion_module._min_numel == 5
        assert not fusion_module._enabled
        assert fusion_module._min_numel == fusion_module.MIN_FUSED_NUMEL
    assert fusion_module._enabled
    with pytest.raises(RuntimeError), onednn_fusion(False):
        raise RuntimeError
    assert fusion_module._enabled


def test_gelu_falls_back_where_the_fusion_does_not_apply():
    """float64 (no oneDNN kernel), with and without gradients."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    expected = F.gelu(conv(x))
    with torch.no_grad():
        out = conv2d_gelu(x, conv.weight, conv.bias, 1, 1)
    torch.testing.assert_close(out, expected.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize('name', [
    'attn.lepe', 'attn.out_proj', 'ffn.fc1', 'ffn.fc2'])
def test_hooked_modules_are_called_as_modules_in_inference(name):
    """A forward hook on a convolution the fused path would bypass still
    fires, and sees (and may change) the module's output."""
    torch.manual_seed(0)
    block = SecViTBlock(32, 2, 3, layer_scale=True, layer_scale_init=0.5)
    randomize_weights(block)
    block.eval()
    x = channels_last(1, 32, 8, 8)
    sin, cos = RoPE2d(32, 2)((8, 8))
    with torch.no_grad(), onednn_fusion(True, min_numel=0):
        expected = block(x.clone(), sin, cos)
    seen = []
    handle = block.get_submodule(name).register_forward_hook(
        lambda module, args, out: seen.append(out.shape))
    with torch.no_grad(), onednn_fusion(True, min_numel=0):
        hooked = block(x.clone(), sin, cos)
    handle.remove()
    assert len(seen) == 1
    torch.testing.assert_close(hooked, expected, rtol=1e-5, atol=1e-5)
    # A hook that changes the output changes the block's result.
    block.get_submodule(name).register_forward_hook(
        lambda module, args, out: out * 0)
    with torch.no_grad(), onednn_fusion(True, min_numel=0):
        changed = block(x.clone(), sin, cos)
    assert not torch.allclose(changed, expected)
