# Copyright (c) mmsecvit contributors. All rights reserved.
"""SecViT under ``torch.compile(dynamic=True)``: many input sizes, a
bounded number of graphs, the eager outputs (float64, where a rounding
difference cannot move a token across a cluster boundary).

Compiling is slow on a small CPU machine (minutes per graph), so the
default run traces with ``aot_eager`` (Dynamo and AOTAutograd with dynamic
shapes, eager kernels); the Inductor test runs when
``MMSECVIT_INDUCTOR_TESTS=1`` is set.
"""
import os

import pytest
import torch

from mmsecvit.analysis.compile_check import check_dynamic_compile
from mmsecvit.models import SecViT
from mmsecvit.models.layers.sec_attention import resolve_cluster_length
from mmsecvit.testing import TEST_ARCH

# Not square first: a square size would let H and W share one symbol
# ("duck sizing"), and the first non-square size would recompile.
SIZES = [(96, 80), (128, 72), (64, 64), (80, 112)]


def _compile_and_compare(backend, sizes, cluster_mode='num_clusters'):
    torch.manual_seed(0)
    model = SecViT(arch=TEST_ARCH, cluster_mode=cluster_mode,
                   cluster_size=16).double().eval()
    report = check_dynamic_compile(
        model, sizes, backend, torch.float64, stop_on_error=True)
    assert report.max_diff < 1e-10
    return report.graphs


@pytest.mark.parametrize('cluster_mode', ['num_clusters', 'cluster_size'])
def test_backbone_traces_many_sizes_into_few_graphs(cluster_mode):
    graphs = _compile_and_compare('aot_eager', SIZES, cluster_mode)
    # One graph for all sizes, plus at most one per token count that the
    # cluster length divides (a different split of the clusters).
    assert 1 <= graphs <= 2


@pytest.mark.skipif(
    os.environ.get('MMSECVIT_INDUCTOR_TESTS') != '1',
    reason='Inductor compiles for minutes per graph on a small CPU '
    'machine; set MMSECVIT_INDUCTOR_TESTS=1 to run it')
def test_backbone_compiles_with_inductor_for_many_sizes():
    graphs = _compile_and_compare('inductor', SIZES[:3])
    assert 1 <= graphs <= 2


@pytest.mark.parametrize('tokens, clusters, expected', [(100, 3, 34),
                                                        (96, 4, 24),
                                                        (5, 8, 1)])
def test_cluster_length_is_the_integer_ceiling(tokens, clusters, expected):
    assert resolve_cluster_length(tokens, clusters, 'num_clusters',
                                  98) == expected
