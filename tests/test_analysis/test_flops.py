# Copyright (c) mmsecvit contributors. All rights reserved.
"""FLOP counts include SecViT's attention matmuls."""
from mmsecvit.analysis.flops import backbone_flops
from mmsecvit.testing import TEST_ARCH


def attention_macs(tokens, heads, head_dims, cluster_length):
    # q k^T and attn v: each token meets cluster_length keys, twice.
    return heads * tokens * cluster_length * 2 * head_dims


def test_attention_matmuls_are_counted_exactly():
    # 64x64 input: maps of 16x16, 8x8, 4x4 and 2x2 tokens, head dims 32.
    expected = (
        attention_macs(256, 1, 32, 256 // 4) +
        attention_macs(64, 2, 32, 64 // 2) +
        attention_macs(16, 4, 32, 16 // 2) +
        attention_macs(4, 8, 32, 4))  # the global last stage
    with_attention = backbone_flops(TEST_ARCH, (64, 64))
    without = backbone_flops(TEST_ARCH, (64, 64), count_attention=False)
    assert with_attention['total'] - without['total'] == expected
    # One count gives both (what get_flops.py prints).
    assert with_attention['attention'] == expected
    assert without['attention'] == 0
    assert 'aten::scaled_dot_product_attention' in without['unsupported']
    assert 'aten::scaled_dot_product_attention' not in \
        with_attention['unsupported']


def test_cluster_size_mode_counts_fewer_flops_at_high_resolution():
    paper = backbone_flops(TEST_ARCH, (128, 128))
    linear = backbone_flops(
        TEST_ARCH, (128, 128), cluster_mode='cluster_size', cluster_size=16)
    assert linear['total'] < paper['total']
