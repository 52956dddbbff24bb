# Copyright (c) mmsecvit contributors. All rights reserved.
"""The inference cache of derived parameters: used only without gradients
and graph capture, refreshed whenever a source changes, dropped when the
backbone goes back to training."""
import copy
import pickle
from unittest import mock

import pytest
import torch
import torch.nn as nn

from mmsecvit.models import SecViT
from mmsecvit.models.layers import (cached_derivation, clear_derived_params,
                                    conv_norm, param_cache)
from mmsecvit.testing import TEST_ARCH


class Doubler(nn.Module):
    """Derives ``2 * weight`` through the cache and counts derivations."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(4.))
        self.calls = 0

    def derived(self, extra=None):

        def compute():
            self.calls += 1
            return self.weight * 2,

        return cached_derivation(self, 'double', compute, (self.weight, ),
                                 extra)[0]


def test_inference_derives_once_while_the_sources_are_unchanged():
    module = Doubler()
    with torch.no_grad():
        first = module.derived()
        assert module.derived() is first
    assert module.calls == 1
    assert torch.equal(first, torch.arange(4.) * 2)
    assert not first.requires_grad


def test_sources_without_gradients_are_cached_with_grad_enabled():
    module = Doubler().requires_grad_(False)
    assert module.derived() is module.derived()
    assert module.calls == 1


def test_training_recomputes_every_time_and_gradients_flow():
    module = Doubler()
    module.derived().sum().backward()
    module.derived().sum().backward()
    assert module.calls == 2
    assert torch.equal(module.weight.grad, torch.full((4, ), 4.))
    assert param_cache._CACHE_ATTR not in module.__dict__


@pytest.mark.parametrize('change', [
    'copy_', 'load_state_dict', 'optimizer', 'fused_optimizer', 'data',
    'dtype', 'extra'
])
def test_a_changed_source_is_derived_again(change):
    module = Doubler()
    with torch.no_grad():
        module.derived()
    extra = None
    if change == 'copy_':
        with torch.no_grad():
            module.weight.copy_(torch.ones(4))
    elif change == 'load_state_dict':
        module.load_state_dict(dict(weight=torch.ones(4)))
    elif change in ('optimizer', 'fused_optimizer'):
        # A fused step leaves the version counter as it was.
        fused = change == 'fused_optimizer'
        module.weight.grad = torch.ones(4)
        version = module.weight._version
        torch.optim.AdamW(module.parameters(), lr=1., fused=fused).step()
        assert fused == (module.weight._version == version)
    elif change == 'data':
        module.weight.data = torch.ones(4)
    elif change == 'dtype':
        module.double()
    else:
        extra = 1e-3
    expected = module.weight.detach() * 2
    with torch.no_grad():
        derived = module.derived(extra)
    assert module.calls == 2
    assert derived.dtype == module.weight.dtype
    assert torch.equal(derived, expected)


@pytest.mark.parametrize('recording',
                         ['is_tracing', 'is_in_onnx_export', 'is_compiling'])
def test_graph_capture_derives_in_the_graph(recording):
    module = Doubler()
    target = dict(
        is_tracing='torch.jit.is_tracing',
        is_in_onnx_export='torch.onnx.is_in_onnx_export',
        is_compiling='torch.compiler.is_compiling')[recording]
    with torch.no_grad(), mock.patch(target, return_value=True):
        module.derived()
        module.derived()
    assert module.calls == 2
    assert param_cache._CACHE_ATTR not in module.__dict__


def test_folded_norm_is_channels_last_and_follows_running_statistics():
    conv = nn.Conv2d(4, 8, 3, padding=1).double()
    norm = nn.BatchNorm2d(8).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)
    norm.train()
    norm(conv(x))  # running statistics move away from 0 and 1
    norm.eval()
    with torch.no_grad():
        assert torch.allclose(conv_norm(conv, norm, x), norm(conv(x)))
        (weight, _), = [
            entry[2]
            for entry in conv.__dict__[param_cache._CACHE_ATTR].values()
        ]
        assert weight.is_contiguous(memory_format=torch.channels_last)
        norm.train()
        norm(conv(x))  # the statistics change in place
        norm.eval()
        assert torch.allclose(conv_norm(conv, norm, x), norm(conv(x)))


def _backbone():
    return SecViT(arch=TEST_ARCH, out_indices=(0, 1, 2, 3)).double()


def test_backbone_in_eval_follows_new_weights_and_drops_caches_in_train():
    torch.manual_seed(0)
    model, other = _backbone().eval(), _backbone().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # fills the caches
        assert any(param_cache._CACHE_ATTR in m.__dict__
                   for m in model.modules())
        model.load_state_dict(other.state_dict())
        for out, expected in zip(model(x), other(x)):
            assert torch.equal(out, expected)
    model.train()
    assert not any(param_cache._CACHE_ATTR in m.__dict__
                   for m in model.modules())


def test_writes_through_data_need_clear_derived_params():
    # ``.data`` has its own version counter: such a write is not seen (the
    # documented limit) until the caches are dropped.
    module = Doubler()
    with torch.no_grad():
        module.derived()
        module.weight.data.copy_(torch.ones(4))
        assert torch.equal(module.derived(), torch.arange(4.) * 2)
        clear_derived_params(module)
        assert torch.equal(module.derived(), torch.full((4, ), 2.))


def test_copies_and_pickles_of_a_module_start_without_the_cache():
    module = Doubler()
    with torch.no_grad():
        module.derived()
    copied = copy.deepcopy(module)
    restored = pickle.loads(pickle.dumps(module))
    for other in (copied, restored):
        assert not other.__dict__[param_cache._CACHE_ATTR]
        with torch.no_grad():
            assert torch.equal(other.derived(), torch.arange(4.) * 2)


def test_entries_of_inference_mode_serve_inference_mode_only():
    module = Doubler().requires_grad_(False)
    with torch.inference_mode():
        inside = module.derived()
        assert inside.is_inference()
        assert module.derived() is inside
    # Outside inference mode the entry is derived again: an inference
    # tensor cannot be saved for a backward.
    outside = module.derived()
    assert not outside.is_inference()
    assert module.calls == 2
    assert module.derived() is outside


def test_a_frozen_backbone_gives_input_gradients_after_inference_mode():
    """E.g. a saliency map or an adversarial input of a frozen detector
    after an evaluation under ``torch.inference_mode``: the folded norms,
    the reordered qkv weights and the kernels plus identity derived there
    must not be saved for the backward."""
    torch.manual_seed(0)
    model = _backbone().eval().requires_grad_(False)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    expected_x = x.clone().requires_grad_()
    sum(out.sum() for out in model(expected_x)).backward()
    clear_derived_params(model)
    with torch.inference_mode():
        model(x)
    x.requires_grad_()
    sum(out.sum() for out in model(x)).backward()
    torch.testing.assert_close(x.grad, expected_x.grad, rtol=0, atol=1e-12)
