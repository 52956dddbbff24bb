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
import shutil

import pytest
import torch

from mmsecvit.analysis.compile_check import (backbone_blocks,
                                             check_dynamic_compile,
                                             compile_regions)
from mmsecvit.models import SecViT
from mmsecvit.models.backbones.secvit import SecViTBlock
from mmsecvit.models.layers.rope import RoPE2d
from mmsecvit.models.layers.sec_attention import resolve_cluster_length
from mmsecvit.testing import TEST_ARCH

pytestmark = pytest.mark.usefixtures('fresh_dynamo')

# Not square first: a square size would let H and W share one symbol
# ("duck sizing"), and the first non-square size would recompile.
SIZES = [(96, 80), (128, 72), (64, 64), (80, 112)]
CLUSTER_SIZE = 16


def _compile_and_compare(backend, sizes, cluster_mode='num_clusters',
                         regions=None, arch=TEST_ARCH):
    torch.manual_seed(0)
    model = SecViT(
        arch=arch, cluster_mode=cluster_mode,
        cluster_size=CLUSTER_SIZE).double().eval()
    report = check_dynamic_compile(
        model, sizes, backend, torch.float64, stop_on_error=True,
        regions=regions)
    assert report.max_diff < 1e-10
    return report.graphs


def _split_patterns(sizes, cluster_mode):
    """How the tokens of each clustering stage split, per size: whether the
    cluster length divides the token count and whether one cluster holds
    all tokens. Compiled code branches on exactly these."""
    patterns = set()
    for h, w in sizes:
        pattern = []
        for i, clusters in enumerate(TEST_ARCH['num_clusters']):
            stride = 2**(i + 2)
            tokens = -(-h // stride) * -(-w // stride)
            length = resolve_cluster_length(tokens, clusters, cluster_mode,
                                            CLUSTER_SIZE)
            pattern.append((tokens % length == 0, length >= tokens))
        patterns.add(tuple(pattern))
    return patterns


@pytest.mark.parametrize('cluster_mode', ['num_clusters', 'cluster_size'])
def test_backbone_traces_many_sizes_into_few_graphs(cluster_mode):
    graphs = _compile_and_compare('aot_eager', SIZES, cluster_mode)
    # A new graph only where the clusters split differently (e.g. a shorter
    # last cluster appears), never one per size.
    patterns = _split_patterns(SIZES, cluster_mode)
    assert len(patterns) < len(SIZES)
    assert 1 <= graphs <= len(patterns)


def _stage_split_patterns(sizes, cluster_mode):
    """Per stage, the split patterns the sizes give (as above)."""
    return [{
        pattern[i]
        for size in sizes
        for pattern in _split_patterns([size], cluster_mode)
    } for i in range(len(TEST_ARCH['depths']))]


def test_blocks_compiled_one_by_one_share_graphs_within_a_stage():
    # Regional compilation: every block compiled on its own. The blocks of
    # a stage share their graphs: one per stage and split pattern, however
    # many blocks the stage has.
    arch = dict(TEST_ARCH, depths=[2, 2, 2, 2])
    graphs = _compile_and_compare(
        'aot_eager', SIZES, 'cluster_size', regions=backbone_blocks, arch=arch)
    assert graphs == sum(
        len(patterns)
        for patterns in _stage_split_patterns(SIZES, 'cluster_size'))


@pytest.mark.skipif(
    os.environ.get('MMSECVIT_INDUCTOR_TESTS') != '1',
    reason='Inductor compiles for minutes per graph on a small CPU '
    'machine; set MMSECVIT_INDUCTOR_TESTS=1 to run it')
def test_backbone_compiles_with_inductor_for_many_sizes():
    graphs = _compile_and_compare('inductor', SIZES[:3])
    assert 1 <= graphs <= len(_split_patterns(SIZES[:3], 'num_clusters'))


@pytest.mark.parametrize('tokens, clusters, expected', [(100, 3, 34),
                                                        (96, 4, 24),
                                                        (5, 8, 1)])
def test_cluster_length_is_the_integer_ceiling(tokens, clusters, expected):
    assert resolve_cluster_length(tokens, clusters, 'num_clusters',
                                  98) == expected


def test_training_compiles_for_two_sizes_with_the_eager_gradients():
    # Training under torch.compile(dynamic=True): the backward formulas of
    # our own step aside while a graph is captured, and the compiled
    # forward and backward give eager's gradients at every size.
    torch.manual_seed(0)
    model = SecViT(arch=TEST_ARCH, drop_path_rate=0.).double().train()
    compiled = torch.compile(model, backend='aot_eager', dynamic=True)
    for size in SIZES[:2]:
        x = torch.rand(2, 3, *size, dtype=torch.float64)
        grads = []
        for runner in (model, compiled):
            model.zero_grad()
            sum((out**2).mean() for out in runner(x)).backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for eager, graph in zip(*grads):
            torch.testing.assert_close(graph, eager, rtol=0, atol=1e-10)


def test_float32_training_of_a_block_is_captured_in_one_graph():
    # float32 on the CPU is where our own backward formulas apply. While a
    # graph is captured they step aside, and must do so before any check
    # TorchDynamo cannot trace (the oneDNN queries), which would break the
    # graph in every block.
    torch.manual_seed(0)
    block = SecViTBlock(32, 2, 4, cluster_mode='cluster_size',
                        cluster_size=CLUSTER_SIZE).train()
    sin, cos = RoPE2d(32, 2)((12, 10))
    x = torch.rand(2, 32, 12, 10).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(
        block, backend='aot_eager', dynamic=True, fullgraph=True)
    compiled(x, sin, cos).sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.isfinite().all(), name


@pytest.mark.skipif(
    shutil.which('g++') is None and shutil.which('c++') is None,
    reason='Inductor needs a C++ compiler on the CPU')
@pytest.mark.xfail(
    tuple(int(v) for v in torch.__version__.split('+')[0].split('.')[:2]) <
    (2, 13),
    reason="torch 2.6's Inductor fails to lower the backward's convolution "
    'with dynamic shapes (LoweringException: NotImplementedError: View); '
    'passes with torch 2.13 (docs/benchmark.md, torch.compile)',
    strict=False)
def test_training_block_compiles_with_inductor_and_gives_eager_gradients():
    # Inductor with dynamic shapes failed on the views SecViT saves for the
    # backward pass (LayerNorm2d's output, LePE's input; see
    # mmsecvit/models/layers/compile_workarounds.py). One block, float64,
    # two sizes of one split pattern (one graph).
    torch.manual_seed(0)
    block = SecViTBlock(32, 2, 4, cluster_mode='cluster_size',
                        cluster_size=CLUSTER_SIZE).double().train()
    compiled = torch.compile(block, dynamic=True, fullgraph=True)
    for size in [(12, 10), (14, 9)]:
        sin, cos = RoPE2d(32, 2)(size)
        x = torch.rand(2, 32, *size, dtype=torch.float64).contiguous(
            memory_format=torch.channels_last)
        grads = []
        for runner in (block, compiled):
            block.zero_grad()
            out = runner(x, sin.double(), cos.double())
            (out**2).mean().backward()
            grads.append([out.detach()] +
                         [p.grad.clone() for p in block.parameters()])
        for eager, graph in zip(*grads):
            torch.testing.assert_close(graph, eager, rtol=0, atol=1e-10)


@pytest.mark.parametrize('per_block', [False, True])
def test_selective_checkpointing_compiles_with_the_eager_gradients(
        per_block):
    # with_cp='selective' traced by Dynamo: the checkpoint inside the
    # compiled graph (whole backbone) or around compiled blocks.
    torch.manual_seed(0)
    model = SecViT(
        arch=TEST_ARCH, drop_path_rate=0., with_cp='selective').double()
    eager = SecViT(arch=TEST_ARCH, drop_path_rate=0.).double()
    eager.load_state_dict(model.state_dict())
    if per_block:
        # The copy with compiled blocks is the model whose gradients count.
        model = runner = compile_regions(
            model, backbone_blocks, backend='aot_eager', dynamic=True)
    else:
        runner = torch.compile(model, backend='aot_eager', dynamic=True)
    x = torch.rand(2, 3, *SIZES[0], dtype=torch.float64)
    for module in (runner, eager):
        sum((out**2).mean() for out in module(x)).backward()
    for (name, param), reference in zip(model.named_parameters(),
                                        eager.parameters()):
        torch.testing.assert_close(
            param.grad, reference.grad, rtol=0, atol=1e-10, msg=name)
