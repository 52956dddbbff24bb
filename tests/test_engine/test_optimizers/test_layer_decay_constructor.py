# Copyright (c) mmsecvit contributors. All rights reserved.
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from mmsecvit.engine import LayerDecayOptimWrapperConstructor
from mmsecvit.models.backbones import SecViT
from mmsecvit.testing import arch_with

BASE_LR = 1e-3
BASE_WD = 0.05
RATE = 0.5
SMALL_ARCH = arch_with(layer_scales=[True] * 4)


class ToyDetector(nn.Module):
    """A backbone plus a head, named like mmdet/mmseg models."""

    def __init__(self):
        super().__init__()
        self.backbone = SecViT(arch=SMALL_ARCH)
        self.head = nn.Conv2d(256, 4, 1)


def build(model, layer_decay_rate=RATE, custom_keys=None):
    # The no-decay rules of the configs under configs/_base_/schedules/.
    custom_keys = custom_keys or {'gamma_': dict(decay_mult=0.)}
    cfg = dict(
        constructor='mmsecvit.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
        paramwise_cfg=dict(
            layer_decay_rate=layer_decay_rate,
            norm_decay_mult=0.,
            bias_decay_mult=0.,
            custom_keys=custom_keys))
    optim_wrapper = build_optim_wrapper(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(group['params'][0])]: group
        for group in optim_wrapper.optimizer.param_groups
    }


@pytest.fixture(scope='module')
def model():
    return ToyDetector()


def test_lr_decays_from_the_last_layer_to_the_stem(model):
    groups = build(model)
    # depths [1, 1, 1, 1]: stem = layer 0, block i = layer i + 1, and the
    # output norms and everything outside the backbone = layer 5 of 6.
    expected_scale = {
        'backbone.patch_embed.proj.0.weight': RATE**5,
        'backbone.layers.0.blocks.0.attn.qkv.weight': RATE**4,
        'backbone.layers.0.downsample.reduction.weight': RATE**4,
        'backbone.layers.1.blocks.0.ffn.fc1.weight': RATE**3,
        'backbone.layers.2.blocks.0.attn.out_proj.weight': RATE**2,
        'backbone.layers.3.blocks.0.ffn.fc2.weight': RATE**1,
        'backbone.norm3.norm.weight': 1.,
        'head.weight': 1.,
        'head.bias': 1.,
    }
    for name, scale in expected_scale.items():
        assert groups[name]['lr'] == pytest.approx(BASE_LR * scale), name


def test_every_trainable_parameter_is_optimised_once(model):
    groups = build(model)
    assert set(groups) == {
        n
        for n, p in model.named_parameters() if p.requires_grad
    }


def test_norms_biases_and_layer_scales_have_no_weight_decay(model):
    groups = build(model)
    no_decay = [
        'backbone.patch_embed.proj.1.weight',  # BatchNorm
        'backbone.layers.1.blocks.0.norm1.norm.weight',  # LayerNorm
        'backbone.layers.1.blocks.0.attn.qkv.bias',
        'backbone.layers.2.blocks.0.gamma_1',
        'head.bias',
    ]
    decay = [
        'backbone.patch_embed.proj.0.weight',
        'backbone.layers.1.blocks.0.attn.qkv.weight',
        'head.weight',
    ]
    for name in no_decay:
        assert groups[name]['weight_decay'] == 0, name
    for name in decay:
        assert groups[name]['weight_decay'] == pytest.approx(BASE_WD), name


def test_custom_lr_mult_combines_with_the_layer_decay(model):
    groups = build(
        model, custom_keys={'attn.qkv': dict(lr_mult=0.1, decay_mult=1.)})
    # custom_keys replace the other rules for the parameters they match.
    name = 'backbone.layers.2.blocks.0.attn.qkv.weight'
    assert groups[name]['lr'] == pytest.approx(BASE_LR * 0.1 * RATE**2)


def test_rate_one_keeps_the_base_lr(model):
    groups = build(model, layer_decay_rate=1.0)
    assert {g['lr'] for g in groups.values()} == {BASE_LR}


def test_frozen_stages_are_left_out():
    detector = ToyDetector()
    detector.backbone = SecViT(arch=SMALL_ARCH, frozen_stages=0)
    groups = build(detector)
    assert not any(n.startswith('backbone.patch_embed') for n in groups)
    assert 'backbone.layers.1.blocks.0.attn.qkv.weight' in groups


@pytest.mark.parametrize('rate', [0, -0.1, 1.5, '0.9'])
def test_invalid_rate_is_rejected(rate):
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW', lr=BASE_LR)),
            dict(layer_decay_rate=rate))


def test_missing_rate_is_rejected():
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW', lr=BASE_LR)), dict())


def test_model_without_layer_depth_is_rejected():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match='get_layer_depth'):
        build(model)


def test_optimizer_steps_with_the_decayed_groups(model):
    cfg = dict(
        constructor='mmsecvit.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
        paramwise_cfg=dict(layer_decay_rate=RATE))
    optim_wrapper = build_optim_wrapper(model, cfg)
    before = model.head.weight.detach().clone()
    out = model.head(model.backbone(torch.rand(1, 3, 64, 64))[-1])
    optim_wrapper.update_params(out.mean())
    assert not torch.equal(before, model.head.weight)
