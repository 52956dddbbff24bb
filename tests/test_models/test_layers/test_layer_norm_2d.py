# Copyright (c) mmsecvit contributors. All rights reserved.
"""LayerNorm2d: the eager path (permute, layer_norm, permute back) and the
permute-free path it takes while torch.compile captures a graph."""
import shutil

import pytest
import torch
import torch.nn.functional as F

from mmsecvit.models.layers.norm import LayerNorm2d, layer_norm_over_channels

pytestmark = pytest.mark.usefixtures('fresh_dynamo')


def _channels_last(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype).contiguous(
        memory_format=torch.channels_last)


def _trained_norm(channels, dtype=torch.float64):
    norm = LayerNorm2d(channels).to(dtype)
    with torch.no_grad():
        norm.norm.weight.uniform_(0.5, 1.5)
        norm.norm.bias.uniform_(-0.5, 0.5)
    return norm


@pytest.mark.parametrize('memory_format',
                         [torch.channels_last, torch.contiguous_format])
def test_permute_free_path_equals_the_eager_path(memory_format):
    torch.manual_seed(0)
    norm = _trained_norm(24)
    x = (3 * torch.randn(2, 24, 7, 9, dtype=torch.float64) + 1).contiguous(
        memory_format=memory_format)
    expected = norm(x)
    out = layer_norm_over_channels(x, norm.norm.weight, norm.norm.bias,
                                   norm.norm.eps)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert out.is_contiguous(memory_format=memory_format)


def test_compiled_layer_norm_takes_the_permute_free_path():
    # Traced by Dynamo, LayerNorm2d must not produce the permuted view
    # (see test_training_graph_compiles_with_inductor): the captured graph
    # holds no permute.
    norm = _trained_norm(16, torch.float32)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(norm, backend=backend, dynamic=True,
                             fullgraph=True)
    x = _channels_last(2, 16, 5, 6, dtype=torch.float32)
    torch.testing.assert_close(compiled(x), norm(x))
    targets = {node.target for node in graphs[0].graph.nodes}
    assert torch.permute not in targets and 'permute' not in targets
    assert torch.var_mean in targets


@pytest.mark.skipif(
    shutil.which('g++') is None and shutil.which('c++') is None,
    reason='Inductor needs a C++ compiler on the CPU')
def test_training_graph_compiles_with_inductor():
    # The pattern of every SecViT block: LayerNorm2d on a channels-last map,
    # then a convolution, which saves its input for the backward pass. With
    # the permuted view as that input, Inductor (torch 2.13, dynamic=True)
    # failed with "cannot determine truth value of Relational"
    # (pytorch/pytorch#185510).
    torch.manual_seed(0)
    norm = _trained_norm(16, torch.float32)
    conv = torch.nn.Conv2d(16, 8, 1)

    def step(x):
        return F.gelu(conv(norm(x)))

    compiled = torch.compile(step, dynamic=True)
    for size in [(5, 6), (7, 4)]:
        x = _channels_last(2, 16, *size, dtype=torch.float32)
        grads = []
        for runner in (step, compiled):
            conv.zero_grad()
            norm.zero_grad()
            out = runner(x)
            (out * out).sum().backward()
            grads.append(
                [out.detach()] +
                [p.grad.clone() for p in (*conv.parameters(),
                                          *norm.parameters())])
        for eager, graph in zip(*grads):
            torch.testing.assert_close(graph, eager, rtol=1e-4, atol=1e-5)
