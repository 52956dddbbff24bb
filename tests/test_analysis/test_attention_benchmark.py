# Copyright (c) mmsecvit contributors. All rights reserved.
"""The attention kernel benchmark: recorded shapes, the written-out
attention, the timing loop and the table (no timing asserts)."""
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from mmsecvit.analysis import attention_benchmark
from mmsecvit.analysis.attention_benchmark import (AttentionShape,
                                                   explicit_attention,
                                                   format_attention_table,
                                                   record_attention_shapes,
                                                   time_attention)
from mmsecvit.analysis.compile_check import recompile_limit_name
from mmsecvit.analysis.flops import count_flops
from mmsecvit.models import SecViT
from mmsecvit.models.layers.sec_attention import resolve_cluster_length
from mmsecvit.testing import TEST_ARCH
from mmsecvit.utils.errors import ConfigValueError


@pytest.mark.parametrize('cluster_mode', ['num_clusters', 'cluster_size'])
def test_recorded_shapes_are_the_clusters_of_every_block(cluster_mode):
    model = SecViT(
        arch=dict(TEST_ARCH, depths=[2, 1, 1, 1]),
        cluster_mode=cluster_mode,
        cluster_size=20).eval()
    size = (72, 56)  # 18x14 tokens in the first stage: 252, not divisible
    shapes = record_attention_shapes(model, torch.rand(2, 3, *size))

    expected = {}
    for i, layer in enumerate(model.layers):
        attn = layer.blocks[0].attn
        n = math.ceil(size[0] / 4 / 2**i) * math.ceil(size[1] / 4 / 2**i)
        length = resolve_cluster_length(n, attn.num_clusters, cluster_mode,
                                        attn.cluster_size)
        parts = [(n // length, length)]
        if n % length:
            parts.append((1, n % length))
        for clusters, part in parts:
            key = (2, clusters * attn.num_heads, part, part,
                   attn.embed_dims // attn.num_heads)
            expected[key] = expected.get(key, 0) + len(layer.blocks)
    recorded = {(s.batch, s.heads, s.query_length, s.key_length,
                 s.head_dims): s.calls
                for s in shapes}
    assert recorded == expected
    # Most multiply-adds first.
    work = [s.macs * s.calls for s in shapes]
    assert work == sorted(work, reverse=True)


def test_recorded_multiply_adds_equal_the_flop_counters_attention():
    model = SecViT(arch=TEST_ARCH, cluster_mode='num_clusters').eval()
    x = torch.rand(1, 3, 64, 96)
    shapes = record_attention_shapes(model, x)
    with_attention = count_flops(model, (x, ))['total']
    without = count_flops(model, (x, ), count_attention=False)['total']
    assert sum(s.macs * s.calls for s in shapes) == with_attention - without


@pytest.mark.parametrize('score_budget', [1, 64 * 64, 2**22])
@pytest.mark.parametrize('lengths', [(64, 64), (50, 70)])
def test_explicit_attention_equals_sdpa_in_float64(score_budget, lengths):
    torch.manual_seed(0)
    q = torch.randn(2, 3, lengths[0], 16, dtype=torch.float64)
    k, v = (torch.randn(2, 3, lengths[1], 16, dtype=torch.float64)
            for _ in range(2))
    out = explicit_attention(q, k, v, score_budget=score_budget)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=1e-12)


def test_every_kernel_is_timed_at_every_shape_and_compared_with_sdpa():
    shapes = [AttentionShape(1, 4, 40, 40, 16, calls=3),
              AttentionShape(2, 2, 17, 17, 8)]
    timings = time_attention(shapes, ['explicit'], repeats=2,
                             dtype=torch.float64)
    assert set(timings) == {(s, k) for s in shapes
                            for k in ('sdpa', 'explicit')}
    for (shape, kernel), timing in timings.items():
        assert timing.error is None
        assert len(timing.times) == 2 and timing.median > 0
        limit = 0 if kernel == 'sdpa' else 1e-12
        assert timing.max_abs_diff <= limit


def test_a_failing_kernel_is_reported_and_the_others_still_run(monkeypatch):

    def broken():

        def attention(q, k, v):
            if q.shape[2] == 17:
                raise RuntimeError('no kernel for 17 tokens')
            return F.scaled_dot_product_attention(q, k, v)

        return attention

    monkeypatch.setitem(attention_benchmark.KERNELS, 'broken', broken)
    shapes = [AttentionShape(1, 2, 32, 32, 8, calls=2),
              AttentionShape(1, 2, 17, 17, 8)]
    timings = time_attention(shapes, ['broken'], repeats=1)
    assert timings[(shapes[0], 'broken')].error is None
    assert 'no kernel for 17' in timings[(shapes[1], 'broken')].error

    table = format_attention_table(shapes, timings, limit_gmacs=100.0)
    lines = table.splitlines()
    assert len(lines) == 2 + 4 + 1  # header, 2 shapes x 2 kernels, 1 total
    assert 'failed: RuntimeError: no kernel for 17' in table
    # Only the kernel that ran everywhere gets a total.
    totals = [line for line in lines if line.startswith('| all')]
    assert len(totals) == 1 and '| sdpa |' in totals[0]
    # The total time of a forward is the sum of calls times time per call.
    per_call = {s: timings[(s, 'sdpa')].median for s in shapes}
    seconds = 2 * per_call[shapes[0]] + per_call[shapes[1]]
    assert f'| {seconds * 1e3:.1f} |' in totals[0]
    assert '%' in totals[0]


def test_bad_kernels_and_repeats_are_refused():
    shapes = [AttentionShape(1, 1, 8, 8, 8)]
    with pytest.raises(ConfigValueError, match="Unknown attention kernels"
                       r".*\['fast'\].*explicit"):
        time_attention(shapes, ['fast'])
    with pytest.raises(ConfigValueError, match='repeats must be at least 1'):
        time_attention(shapes, repeats=0)


@pytest.mark.skipif(
    shutil.which('g++') is None and shutil.which('c++') is None,
    reason='Inductor needs a C++ compiler on the CPU')
@pytest.mark.usefixtures('fresh_dynamo')
def test_flex_attention_is_compiled_for_each_shape():
    # More shapes than Dynamo's recompile limit: each still gets its graph.
    # (Dynamo's own patch, not monkeypatch: undoing a monkeypatch of a
    # Dynamo config attribute deletes it in torch 2.6.)
    shapes = [AttentionShape(1, 2, 16, 16, 8),
              AttentionShape(1, 2, 32, 32, 8)]
    with torch._dynamo.config.patch(**{recompile_limit_name(): 1}):
        timings = time_attention(shapes, ['flex'], repeats=1)
    for shape in shapes:
        flex = timings[(shape, 'flex')]
        assert flex.error is None, flex.error
        assert flex.max_abs_diff < 1e-5
