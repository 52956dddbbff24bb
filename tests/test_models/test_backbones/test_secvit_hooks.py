# Copyright (c) mmsecvit contributors. All rights reserved.
"""Module hooks on any part of SecViT run, and see what the module itself
computes, in training and in (fused) inference alike: feature and gradient
hooks (CAMs, visualisation), ``torch.nn.utils.prune`` and other
re-parametrisations that recompute a weight in a forward pre-hook."""
from collections import Counter

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

from mmsecvit.models import SecViT
from mmsecvit.testing import TEST_ARCH, randomize_weights

#: The leaf modules SecViT's fused paths compute from their parameters:
#: every one of them must run as a module once it has a hook.
LEAVES = (nn.Conv2d, nn.LayerNorm, nn.BatchNorm2d, nn.GELU)

MODES = {
    'train': (True, torch.enable_grad),
    'eval, no_grad': (False, torch.no_grad),
    'eval, inference_mode': (False, torch.inference_mode),
}


def _model():
    model = SecViT(arch=TEST_ARCH, out_indices=(0, 1, 2, 3))
    return randomize_weights(model)


def _outputs(model, x, mode):
    training, context = MODES[mode]
    model.train(training)
    torch.manual_seed(0)
    with context():
        return [out.clone() for out in model(x)]


def _count_calls(named_modules) -> Counter:
    """Count the calls of each module by name, through forward hooks."""
    calls = Counter()
    for name, module in named_modules:
        module.register_forward_hook(
            lambda module, args, out, name=name: calls.update([name]))
    return calls


def _leaves(model):
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, LEAVES)]


@pytest.mark.parametrize('mode', list(MODES))
def test_every_hooked_leaf_runs_once_and_the_outputs_stay(mode):
    model = _model()
    x = torch.randn(1, 3, 64, 64)
    expected = _outputs(model, x, mode)
    leaves = _leaves(model)
    calls = _count_calls(leaves)
    outs = _outputs(model, x, mode)
    assert [name for name, _ in leaves if calls[name] != 1] == []
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('training', [False, True])
def test_hooked_leaves_run_in_a_compiled_model(training):
    """Traced by Dynamo (the graph-free 'eager' backend: the tracing is
    what decides which modules are called), hooked leaves still run."""
    model = _model().train(training)
    x = torch.randn(1, 3, 64, 64)
    leaves = _leaves(model)
    calls = _count_calls(leaves)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='eager')
    with torch.set_grad_enabled(training):
        compiled(x)
    assert [name for name, _ in leaves if calls[name] != 1] == []


@pytest.mark.parametrize('mode', list(MODES))
def test_hooked_drop_paths_see_both_branches(mode):
    """Every block passes its attention and its FFN branch through
    ``drop_path`` (an ``nn.Identity`` at rate 0, ``DropPath`` otherwise)."""
    model = _model()
    x = torch.randn(1, 3, 64, 64)
    expected = _outputs(model, x, mode)
    blocks = [(name, block) for name, block in model.named_modules()
              if name.endswith('.blocks.0') or name.endswith('.blocks.1')]
    assert blocks
    calls = _count_calls(
        (name, block.drop_path) for name, block in blocks)
    outs = _outputs(model, x, mode)
    assert [name for name, _ in blocks if calls[name] != 2] == []
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', [
    'layers.1.blocks.0.attn', 'layers.1.blocks.0.ffn',
    'layers.1.blocks.0.norm1', 'layers.1.blocks.0.attn.qkv',
    'layers.0.blocks.0.attn.qkv', 'layers.1.blocks.0.ffn.fc1'
])
def test_a_hook_sees_the_modules_own_output_in_inference(name):
    """Without gradients the block sums its residuals into the branch
    outputs in place; a hooked branch keeps its own output, equal to the
    one seen with gradients, and nothing writes to it afterwards."""
    model = _model()
    x = torch.randn(1, 3, 64, 64)
    seen = {}

    def keep(module, args, out):
        seen[torch.is_grad_enabled()] = (out, out.clone())

    model.get_submodule(name).register_forward_hook(keep)
    model.eval()
    with torch.no_grad():
        model(x)
    model(x)
    (inference, at_call), (with_grad, _) = seen[False], seen[True]
    torch.testing.assert_close(
        at_call, with_grad.detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(inference, at_call)


def test_backward_hooks_fire_on_every_leaf():
    model = _model().train()
    fired = Counter()
    leaves = [(name, module) for name, module in model.named_modules()
              if isinstance(module, LEAVES)]
    for name, module in leaves:
        module.register_full_backward_hook(
            lambda module, grad_in, grad_out, name=name: fired.update([name]))
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    sum(out.sum() for out in model(x)).backward()
    assert [name for name, _ in leaves if fired[name] != 1] == []


@pytest.mark.parametrize('mode', ['train', 'eval, no_grad'])
def test_pruned_convolutions_train_and_infer_with_their_masks(mode):
    """``prune`` recomputes ``weight`` from ``weight_orig`` and the mask in
    a forward pre-hook; a path that read ``conv.weight`` without calling
    the module would use the weight of the last call, and in training
    backpropagate through the previous step's graph."""
    model = _model()
    names = [
        'patch_embed.proj.0', 'layers.0.blocks.0.pos',
        'layers.0.blocks.0.attn.qkv', 'layers.0.blocks.0.ffn.dwconv',
        'layers.0.downsample.reduction'
    ]
    for name in names:
        prune.l1_unstructured(model.get_submodule(name), 'weight', 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        sum(out.sum() for out in model(x)).backward()
        optimizer.step()
    # The same weights, pruned for good: the outputs agree.
    pruned = _outputs(model, x, mode)
    for name in names:
        prune.remove(model.get_submodule(name), 'weight')
    for out, ref in zip(pruned, _outputs(model, x, mode)):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
