# Copyright (c) mmsecvit contributors. All rights reserved.
"""own_memory_when_compiling: a no-op eagerly; under torch.compile a copy
the partitioner keeps (a custom operator), with an identity gradient."""
import pytest
import torch
import torch.nn.functional as F

from mmsecvit.models.layers.compile_workarounds import \
    own_memory_when_compiling

pytestmark = pytest.mark.usefixtures('fresh_dynamo')


def _permuted_conv(x, weight):
    # The pattern of LePE: a permuted view into a convolution, which keeps
    # its input for the weight gradient.
    return F.conv2d(own_memory_when_compiling(x.permute(0, 3, 1, 2)),
                    weight, padding=1, groups=weight.shape[0])


def test_eager_returns_the_tensor_itself():
    x = torch.rand(2, 5, 6, 4).permute(0, 3, 1, 2)
    assert own_memory_when_compiling(x) is x


def test_compiled_copy_is_a_custom_op_with_the_eager_gradients():
    torch.manual_seed(0)
    weight = torch.rand(4, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.rand(2, 5, 6, 4, dtype=torch.float64, requires_grad=True)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(
        _permuted_conv, backend=backend, dynamic=True, fullgraph=True)
    grads = []
    for runner in (_permuted_conv, compiled):
        out = runner(x, weight)
        (out**2).sum().backward()
        grads.append((out.detach(), x.grad.clone(), weight.grad.clone()))
        x.grad = weight.grad = None
    for eager, graph in zip(*grads):
        torch.testing.assert_close(graph, eager, rtol=0, atol=1e-12)
    targets = [str(node.target) for node in graphs[0].graph.nodes]
    assert any('mmsecvit.materialize' in target for target in targets)
