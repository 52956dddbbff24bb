# Copyright (c) mmsecvit contributors. All rights reserved.
"""The chunked CPU attention for short clusters equals the SDPA path."""
from unittest import mock

import pytest
import torch

from mmsecvit.models import SecViT
from mmsecvit.models.layers import short_cluster_attention as sca
from mmsecvit.models.layers.sec_attention import (clustered_attention_packed,
                                                  sec_order)
from mmsecvit.models.layers.short_cluster_attention import (
    short_cluster_kernel, short_cluster_kernel_applies)
from mmsecvit.testing import TEST_ARCH, randomize_weights


def packed_qkv(num_tokens, heads=2, dims=8, batch=2, token_major=True,
               dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, num_tokens, heads, 3, dims) if token_major else (
        batch, heads, num_tokens, 3, dims)
    qkv = torch.randn(*shape, generator=gen, dtype=dtype)
    return qkv.transpose(1, 2) if token_major else qkv


def both_paths(qkv, length, order=None):
    """(chunked kernel, SDPA) outputs of the same clustered attention."""
    with torch.no_grad():
        assert short_cluster_kernel_applies(qkv, length)
        with mock.patch.object(sca, 'gather_attend_scatter',
                               wraps=sca.gather_attend_scatter) as kernel:
            chunked = clustered_attention_packed(qkv, length, order)
        assert kernel.called
        with short_cluster_kernel(False):
            fused = clustered_attention_packed(qkv, length, order)
    return chunked, fused


@pytest.mark.parametrize('token_major', [True, False])
@pytest.mark.parametrize('num_tokens,length', [(60, 10), (67, 10), (7, 3)])
@pytest.mark.parametrize('chunk_bytes', [1, 3 * 10 * 10 * 8, 1 << 20])
def test_chunked_kernel_equals_sdpa(token_major, num_tokens, length,
                                    chunk_bytes):
    # Chunks of 1 cluster, of 3 (the last one partial) and of all
    # clusters; token counts that do and do not divide into clusters.
    qkv = packed_qkv(num_tokens, token_major=token_major)
    with mock.patch.object(sca, 'CHUNK_BYTES', chunk_bytes):
        chunked, fused = both_paths(qkv, length)
    assert chunked.shape == fused.shape == (2, 2, num_tokens, 8)
    torch.testing.assert_close(chunked, fused, rtol=0, atol=1e-12)


def test_chunked_kernel_float32_within_rounding():
    qkv = packed_qkv(300, heads=4, dims=32, dtype=torch.float32)
    order = sec_order(qkv[..., 1, :])
    chunked, fused = both_paths(qkv, 98, order)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, fused, rtol=1e-5, atol=1e-5)


def test_the_kernel_is_used_only_where_it_applies():
    qkv = packed_qkv(20, dtype=torch.float32)
    with torch.no_grad():
        assert short_cluster_kernel_applies(qkv, 10)
        assert not short_cluster_kernel_applies(qkv,
                                                sca.MAX_CLUSTER_LENGTH + 1)
        assert not short_cluster_kernel_applies(qkv.half(), 10)
        assert not short_cluster_kernel_applies(qkv.bfloat16(), 10)
        assert not short_cluster_kernel_applies(qkv.to('meta'), 10)
        with short_cluster_kernel(False):
            assert not short_cluster_kernel_applies(qkv, 10)
        assert short_cluster_kernel_applies(qkv, 10)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not short_cluster_kernel_applies(qkv, 10)
        with mock.patch.object(torch.compiler, 'is_compiling',
                               return_value=True):
            assert not short_cluster_kernel_applies(qkv, 10)
    # Where a gradient is recorded the kernel runs as an op with its own
    # backward, which needs torch.library.custom_op (torch >= 2.4).
    assert short_cluster_kernel_applies(qkv, 10)
    qkv.requires_grad_()
    assert short_cluster_kernel_applies(qkv, 10) == (
        sca.ATTENTION_OP is not None)
    with mock.patch.object(sca, '_attention_op', None):
        assert not short_cluster_kernel_applies(qkv, 10)
        with torch.no_grad():
            assert short_cluster_kernel_applies(qkv, 10)


@pytest.mark.parametrize('token_major', [True, False])
@pytest.mark.parametrize('num_tokens,length', [(60, 10), (67, 10)])
@pytest.mark.parametrize('chunk_bytes', [1, 3 * 10 * 10 * 8, 1 << 20])
def test_gradients_equal_sdpa(token_major, num_tokens, length, chunk_bytes):
    qkv = packed_qkv(num_tokens, token_major=token_major)
    grad = torch.randn(2, 2, num_tokens, 8, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(1))
    results = []
    for enabled in (True, False):
        leaf = qkv.clone().requires_grad_()
        source = leaf.transpose(1, 2) if token_major else leaf
        with short_cluster_kernel(enabled), mock.patch.object(
                sca, 'CHUNK_BYTES', chunk_bytes), mock.patch.object(
                    sca, 'gather_attend_scatter_backward',
                    wraps=sca.gather_attend_scatter_backward) as backward:
            out = clustered_attention_packed(
                source.transpose(1, 2) if token_major else source, length)
            out.backward(grad)
        assert backward.called == enabled
        results.append((out.detach(), leaf.grad))
    (out, grad_in), (sdpa_out, sdpa_grad_in) = results
    torch.testing.assert_close(out, sdpa_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_in, sdpa_grad_in, rtol=0, atol=1e-12)


def test_the_op_passes_opcheck():
    # Schema, fake (meta) implementation and autograd registration.
    if sca.ATTENTION_OP is None:
        pytest.skip('torch < 2.4 has no torch.library.custom_op')
    rows = torch.randn(2 * 13, 3 * 4, dtype=torch.float64,
                       requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    source = torch.randperm(26, generator=gen)
    target = torch.randperm(26, generator=gen)
    torch.library.opcheck(sca.ATTENTION_OP,
                          (rows, source, target, 20, 5, 3))


def train_backbone(with_cp, enabled):
    torch.manual_seed(0)
    model = SecViT(arch=TEST_ARCH, cluster_mode='cluster_size',
                   cluster_size=12, drop_path_rate=0.,
                   with_cp=with_cp).double().train()
    randomize_weights(model, seed=0)
    images = torch.rand(2, 3, 64, 96, dtype=torch.float64,
                        requires_grad=True)
    with short_cluster_kernel(enabled), mock.patch.object(
            sca, 'gather_attend_scatter',
            wraps=sca.gather_attend_scatter) as forward:
        outs = model(images)
        weights = [
            torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
            for out in outs
        ]
        sum((out.flatten() * w).sum() for out, w in zip(outs, weights)
            ).backward()
    grads = [images.grad] + [p.grad for p in model.parameters()]
    return [out.detach() for out in outs], grads, forward.call_count


@pytest.mark.parametrize('with_cp', [False, 'selective', True])
def test_backbone_training_equals_sdpa_in_float64(with_cp):
    outs, grads, kernel_calls = train_backbone(with_cp, True)
    sdpa_outs, sdpa_grads, _ = train_backbone(False, False)
    for a, b in zip(outs + grads, sdpa_outs + sdpa_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # One kernel call per clustered block (three, whose token counts
    # divide into clusters of 12) in the forward pass. Selective
    # checkpointing keeps the op's output; full checkpointing runs the
    # forward again.
    assert kernel_calls == {False: 3, 'selective': 3, True: 6}[with_cp]


def test_backbone_outputs_unchanged_in_float64():
    model = SecViT(arch=TEST_ARCH, cluster_mode='cluster_size',
                   cluster_size=12).double().eval()
    randomize_weights(model, seed=0)
    images = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        with mock.patch.object(sca, 'gather_attend_scatter',
                               wraps=sca.gather_attend_scatter) as kernel:
            chunked = model(images)
        assert kernel.called
        with short_cluster_kernel(False):
            fused = model(images)
    for a, b in zip(chunked, fused):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
