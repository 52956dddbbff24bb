# Copyright (c) mmsecvit contributors. All rights reserved.
"""The branch-free attention that ONNX export traces equals the eager one."""
import pytest
import torch

from mmsecvit.models import SecViT
from mmsecvit.models.layers.sec_attention import (
    clustered_attention_packed, clustered_attention_traceable,
    resolve_cluster_length)
from mmsecvit.testing import TEST_ARCH, randomize_weights


def random_qkv(num_tokens, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(
        2, 3, num_tokens, 3, 8, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize('mode', ['num_clusters', 'cluster_size'])
# 64 and 72 divide, 70 and 97 leave a shorter last cluster, 9 and 5 are
# not clustered at all in 'cluster_size' mode (N <= 9).
@pytest.mark.parametrize('num_tokens', [64, 72, 70, 97, 9, 5])
def test_traceable_attention_equals_eager_attention(mode, num_tokens):
    qkv = random_qkv(num_tokens)
    length = resolve_cluster_length(num_tokens, 4, mode, cluster_size=9)
    eager = clustered_attention_packed(qkv, length)
    traced = clustered_attention_traceable(qkv, 4, mode, cluster_size=9)
    torch.testing.assert_close(traced, eager, rtol=0, atol=1e-12)


def test_traceable_attention_of_a_global_block_is_plain_attention():
    qkv = random_qkv(30)
    torch.testing.assert_close(
        clustered_attention_traceable(qkv, -1, 'num_clusters', 98),
        clustered_attention_packed(qkv, 30),
        rtol=0,
        atol=1e-12)


def test_traceable_attention_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match='cluster_mode'):
        clustered_attention_traceable(random_qkv(8), 2, 'tokens', 4)


@pytest.mark.parametrize('mode', ['num_clusters', 'cluster_size'])
def test_backbone_takes_the_same_values_on_the_export_path(monkeypatch, mode):
    model = SecViT(arch=TEST_ARCH, cluster_mode=mode, cluster_size=20)
    model = randomize_weights(model, seed=0).eval().double()
    # 52x44 gives 13x11 = 143 tokens in stage 0: no multiple of 4 or 20.
    x = torch.rand(2, 3, 52, 44, dtype=torch.float64)
    with torch.no_grad():
        eager = model(x)
        monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
        exported = model(x)
    for out, ref in zip(exported, eager):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
