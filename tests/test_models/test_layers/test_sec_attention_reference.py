# Copyright (c) mmsecvit contributors. All rights reserved.
"""The fast SEC attention equals the plainly written reference."""
import pytest
import torch

from mmsecvit.models import SecViT
from mmsecvit.models.layers import RoPE2d
from mmsecvit.models.layers.rope import apply_rope, rotate_pairs
from mmsecvit.models.layers.sec_attention import (clustered_attention,
                                                  clustered_attention_packed,
                                                  permute_rows,
                                                  resolve_cluster_length,
                                                  rope_qk, rope_qk_with_values,
                                                  sec_order)
from mmsecvit.testing import (TEST_ARCH, randomize_weights,
                              reference_clustered_attention,
                              reference_sec_order, use_reference_attention)


def random_qkv(num_tokens, heads=3, dims=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, heads, num_tokens, dims, generator=gen,
                    dtype=torch.float64) for _ in range(3)
    ]


@pytest.mark.parametrize('mode', ['num_clusters', 'cluster_size'])
@pytest.mark.parametrize('num_tokens', [64, 70, 97, 5])
def test_fast_attention_equals_reference(mode, num_tokens):
    q, k, v = random_qkv(num_tokens)
    length = resolve_cluster_length(num_tokens, 4, mode, cluster_size=9)
    fast = clustered_attention(q, k, v, length)
    reference = reference_clustered_attention(q, k, v, length)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)


def test_global_attention_equals_reference():
    q, k, v = random_qkv(50)
    torch.testing.assert_close(
        clustered_attention(q, k, v, 50),
        reference_clustered_attention(q, k, v, 50),
        rtol=0,
        atol=1e-12)


def test_padded_keys_are_masked_in_the_reference():
    # 10 tokens in clusters of 4: the last cluster holds 2 real tokens.
    # Unmasked zero-padded keys would get weight in the softmax; with the
    # mask, the last cluster equals attention among its 2 tokens alone.
    q, k, v = random_qkv(10, heads=1)
    order = reference_sec_order(k)
    out = reference_clustered_attention(q, k, v, 4, order)
    last = order[..., 8:]
    index = last[..., None].expand(-1, -1, -1, q.shape[-1])
    qs, ks, vs = (t.gather(2, index) for t in (q, k, v))
    alone = torch.softmax(qs @ ks.transpose(-1, -2) * q.shape[-1]**-0.5,
                          dim=-1) @ vs
    torch.testing.assert_close(out.gather(2, index), alone, rtol=0,
                               atol=1e-12)


def test_fast_ranking_equals_reference_ranking():
    _, k, _ = random_qkv(200)
    assert torch.equal(sec_order(k), reference_sec_order(k))


def test_fast_rope_equals_plain_rotation():
    x, sin, cos = random_qkv(30, heads=1)
    plain = x * cos + rotate_pairs(x) * sin
    torch.testing.assert_close(apply_rope(x, sin, cos), plain, rtol=0, atol=0)


def packed_qkv_and_tables(dtype, heads=2, dims=8, hw=(5, 7)):
    """q, k, v packed as the attention sees them (a permuted view of a
    channels-last map) and the RoPE tables of that map."""
    h, w = hw
    gen = torch.Generator().manual_seed(0)
    qkv_map = torch.randn(2, 3 * heads * dims, h, w, generator=gen).to(dtype)
    qkv_map = qkv_map.contiguous(memory_format=torch.channels_last)
    qkv = qkv_map.permute(0, 2, 3, 1).reshape(2, h * w, 3, heads, dims) \
        .permute(0, 3, 1, 2, 4)
    sin, cos = RoPE2d(heads * dims, heads).to(dtype)(hw)
    return qkv, sin.to(dtype), cos.to(dtype)


@pytest.mark.parametrize('dtype',
                         [torch.float64, torch.float32, torch.bfloat16])
def test_packed_rope_equals_plain_rope(dtype):
    # float32/64 rotate through complex products (the same products and
    # sums; a vectorised complex kernel may round the last bit differently),
    # bf16 through apply_rope itself.
    qkv, sin, cos = packed_qkv_and_tables(dtype)
    out = rope_qk(qkv, sin, cos)
    assert out.dtype == dtype
    tolerance = {
        torch.float64: dict(rtol=0, atol=1e-14),
        torch.float32: dict(rtol=0, atol=1e-6),
        torch.bfloat16: dict(rtol=0, atol=0)
    }[dtype]
    for i in (0, 1):
        torch.testing.assert_close(out[..., i, :],
                                   apply_rope(qkv[..., i, :], sin, cos),
                                   **tolerance)
    assert torch.equal(out[..., 2, :], qkv[..., 2, :])


def test_packed_rope_gradients_equal_plain_rope():
    qkv, sin, cos = packed_qkv_and_tables(torch.float64)
    qkv.requires_grad_()
    weight = torch.randn(qkv.shape, dtype=torch.float64)
    fast, = torch.autograd.grad((rope_qk(qkv, sin, cos) * weight).sum(), qkv)
    plain = torch.stack([
        apply_rope(qkv[..., 0, :], sin, cos),
        apply_rope(qkv[..., 1, :], sin, cos), qkv[..., 2, :]
    ], dim=3)
    expected, = torch.autograd.grad((plain * weight).sum(), qkv)
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-12)


def token_major_attention(q, k, v, cluster_length, order):
    """``clustered_attention`` on a packed tensor laid out (B, N, heads, 3,
    d) in memory, as the backbone's channels-last qkv convolution makes
    it (the other gather path)."""
    packed = torch.stack([q, k, v], dim=3).transpose(1, 2).contiguous()
    return clustered_attention_packed(packed.transpose(1, 2), cluster_length,
                                      order)


@pytest.mark.parametrize('attention',
                         [clustered_attention, token_major_attention])
@pytest.mark.parametrize('num_tokens,cluster_length', [(37, 8), (40, 8),
                                                       (37, 37)])
def test_fast_attention_gradients_equal_reference(attention, num_tokens,
                                                  cluster_length):
    # 37 tokens in clusters of 8: a shorter last cluster; 40: none; a
    # cluster of all tokens: global attention.
    q, k, v = (t.requires_grad_() for t in random_qkv(num_tokens))
    order = sec_order(k.detach())
    grads = []
    for fn in (attention, reference_clustered_attention):
        out = fn(q, k, v, cluster_length, order)
        grads.append(torch.autograd.grad((out * out).sum(), (q, k, v)))
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, rtol=0, atol=1e-10)


def test_permute_rows_gradients():
    rows = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(permute_rows(rows, index), rows[index])
    torch.autograd.gradcheck(lambda r: permute_rows(r, index), (rows, ))
    torch.autograd.gradgradcheck(lambda r: permute_rows(r, index) ** 2,
                                 (rows, ))


@pytest.mark.parametrize('mode', ['num_clusters', 'cluster_size'])
def test_backbone_fast_path_equals_reference_path(mode):
    # 72x100 gives maps of 18x25, 9x13, 5x7 and 3x4 tokens: none divides
    # into the clusters evenly.
    model = SecViT(arch=TEST_ARCH, cluster_mode=mode, cluster_size=20)
    model = randomize_weights(model.double(), seed=1).eval()
    x = torch.rand(2, 3, 72, 100, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = model(x)
        with use_reference_attention():
            reference = model(x)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize('with_values_grad', [True, False])
@pytest.mark.parametrize('with_rotated_grad', [True, False])
def test_rope_with_values_gradients_equal_rope_and_indexing(
        with_rotated_grad, with_values_grad):
    qkv, sin, cos = packed_qkv_and_tables(torch.float64)
    qkv.requires_grad_()
    rotated, values = rope_qk_with_values(qkv, sin, cos)
    plain = rope_qk(qkv, sin, cos)
    assert torch.equal(rotated, plain)
    assert torch.equal(values, qkv[..., 2, :].transpose(1, 2))
    assert values.is_contiguous()

    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64)
               for t in (rotated, values)]
    used = [with_rotated_grad, with_values_grad]

    def loss(rotated, values):
        pairs = zip((rotated, values), weights, used)
        terms = [(t * w).sum() for t, w, u in pairs if u]
        return sum(terms) if terms else (rotated.sum() * 0)

    fast, = torch.autograd.grad(loss(rotated, values), qkv)
    expected, = torch.autograd.grad(
        loss(plain, qkv[..., 2, :].transpose(1, 2)), qkv)
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-12)
    torch.autograd.gradcheck(
        lambda t: rope_qk_with_values(t, sin, cos), (qkv, ), fast_mode=True)
