# Copyright (c) mmsecvit contributors. All rights reserved.
import copy
import json
from unittest import mock

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._python_dispatch import TorchDispatchMode

from mmsecvit.models import SecViT, parse_arch
from mmsecvit.models.backbones.secvit import valid_sizes
from mmsecvit.models.layers import (BATCH_NORMS, activation_checkpoint,
                                    depthwise_conv, forced_cluster_orders,
                                    record_cluster_assignments)
from mmsecvit.models.layers.sec_attention import cluster_labels
from mmsecvit.registry import MODELS
from mmsecvit.testing import TEST_ARCH, arch_literal, randomize_weights
from mmsecvit.utils.errors import ConfigValueError

# Published parameter counts of the authors' classification models.
PARAMS_WITH_HEAD = dict(
    tiny=14_981_800, small=26_776_104, base=54_682_776, large=96_495_096)
PARAMS_BACKBONE = dict(
    tiny=13_429_440, small=25_223_744, base=53_130_416, large=94_811_664)


def small_model(**kwargs) -> SecViT:
    model = SecViT(arch=copy.deepcopy(TEST_ARCH), **kwargs)
    return randomize_weights(model, seed=0)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_parameter_count_matches_the_authors_models(arch):
    backbone = SecViT(arch=arch, out_norm=False)
    assert count(backbone) == PARAMS_BACKBONE[arch]
    # The authors' classifier: 1x1 conv to 1024, BatchNorm, 1x1 conv to
    # 1000 classes on top of the last stage.
    last = backbone.embed_dims[-1]
    head = (last * 1024 + 1024) + 2 * 1024 + (1024 * 1000 + 1000)
    assert count(backbone) + head == PARAMS_WITH_HEAD[arch]


def test_arch_aliases_and_registry():
    assert SecViT(arch='s').arch_settings == SecViT(arch='small').arch_settings
    # The scoped name works from any registry and any default scope, as
    # mmdet/mmseg configs use it.
    model = MODELS.build(dict(type='mmsecvit.SecViT', arch=TEST_ARCH))
    assert isinstance(model, SecViT)
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS):
        model = registry.build(dict(type='mmsecvit.SecViT', arch=TEST_ARCH))
        assert isinstance(model, SecViT)


@pytest.mark.parametrize('arch, message', [
    ('huge', 'Unknown SecViT arch'),
    (dict(embed_dims=[32] * 4, depths=[1] * 4), 'lacks the keys'),
    (dict(embed_dims=[32] * 3, depths=[1] * 4, num_heads=[1] * 4,
          num_clusters=[2] * 4), 'must have 4 values'),
    (dict(embed_dims=[34] * 4, depths=[1] * 4, num_heads=[1] * 4,
          num_clusters=[2] * 4), 'divisible by 4'),
])
def test_bad_arch_gets_a_clear_error(arch, message):
    with pytest.raises((KeyError, ValueError), match=message):
        SecViT(arch=arch)


def test_state_dict_keys_follow_the_authors_names():
    keys = set(SecViT(arch='tiny', out_norm=False).state_dict())
    for key in [
            'patch_embed.proj.0.weight', 'patch_embed.proj.10.running_var',
            'layers.0.RoPE.angle', 'layers.0.blocks.1.pos.weight',
            'layers.0.blocks.1.norm1.norm.weight',
            'layers.0.blocks.1.attn.qkv.weight',
            'layers.0.blocks.1.attn.lepe.weight',
            'layers.0.blocks.1.attn.out_proj.bias',
            'layers.0.blocks.1.ffn.fc1.weight',
            'layers.0.blocks.1.ffn.dwconv.weight',
            'layers.0.blocks.1.ffn.fc2.weight',
            'layers.2.downsample.reduction.weight',
            'layers.2.downsample.norm.running_mean'
    ]:
        assert key in keys, key
    assert not any(k.startswith('layers.3.downsample') for k in keys)
    base_keys = set(SecViT(arch='base').state_dict())
    assert 'layers.2.blocks.0.gamma_1' in base_keys
    assert 'layers.1.blocks.0.gamma_1' not in base_keys


@pytest.mark.parametrize('size', [(64, 64), (97, 131), (33, 65), (1, 1),
                                  (224, 224)])
def test_output_shapes_for_any_input_size(size):
    model = small_model().eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *size))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        stride = 2**(i + 2)
        expected = (2, TEST_ARCH['embed_dims'][i], -(-size[0] // stride),
                    -(-size[1] // stride))
        assert tuple(out.shape) == expected


def test_tiny_arch_at_a_detection_aspect_ratio():
    model = SecViT(arch='tiny', out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 200, 333))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 25, 42),
                                              (1, 512, 7, 11)]


@pytest.mark.parametrize('mode', ['num_clusters', 'cluster_size'])
def test_images_of_a_batch_do_not_affect_each_other(mode):
    model = small_model(cluster_mode=mode, cluster_size=20).double().eval()
    x = torch.randn(3, 3, 72, 100, dtype=torch.float64)
    with torch.no_grad():
        batched = model(x)
        single = [model(x[i:i + 1]) for i in range(3)]
    for stage, out in enumerate(batched):
        for i in range(3):
            torch.testing.assert_close(
                out[i:i + 1], single[i][stage], rtol=0, atol=1e-12)


def test_batch_padding_never_reaches_real_tokens():
    """An image zero-padded to the batch's size gives the features it has
    alone, and the padded area of the outputs is zero."""
    model = small_model(crop_batch_padding=True).double().eval()
    small = torch.randn(1, 3, 61, 90, dtype=torch.float64)
    large = torch.randn(1, 3, 96, 128, dtype=torch.float64)
    batch = torch.zeros(2, 3, 96, 128, dtype=torch.float64)
    batch[0, :, :61, :90] = small[0]
    batch[1] = large[0]
    with torch.no_grad():
        outs = model(batch)
        alone_small, alone_large = model(small), model(large)
    for out, ref_small, ref_large in zip(outs, alone_small, alone_large):
        h, w = ref_small.shape[2:]
        torch.testing.assert_close(out[:1, :, :h, :w], ref_small)
        assert out[0, :, h:].abs().max() == 0 and out[0, :, :, w:].abs(
        ).max() == 0
        torch.testing.assert_close(out[1:], ref_large)
    # Without cropping, the padding changes the small image's features.
    model.crop_batch_padding = False
    with torch.no_grad():
        padded = model(batch)[0][:1, :, :h, :w]
    assert (padded - outs[0][:1, :, :h, :w]).abs().max() > 1e-3


def test_valid_sizes_end_at_the_last_pixel_that_differs_from_the_pad():
    x = torch.zeros(3, 3, 20, 30)
    x[0, 1, 11, 4] = 1.  # one channel suffices
    x[0, 0, 2, 16] = -1.
    x[1] = 5.  # no padding at all
    # x[2] is all padding: it keeps the full size (not 1x1).
    assert valid_sizes(x, 0.) == [(12, 17), (20, 30), (20, 30)]
    assert valid_sizes(x, 5.) == [(20, 30), (20, 30), (20, 30)]


def test_cluster_size_mode_keeps_tokens_per_cluster():
    model = small_model(cluster_mode='cluster_size', cluster_size=7).eval()
    with torch.no_grad(), record_cluster_assignments(model) as records:
        model(torch.rand(1, 3, 64, 80))  # stage 0: 16 x 20 = 320 tokens
    labels = records['layers.0.blocks.0.attn'][0]
    assert labels.shape == (1, 1, 16, 20)
    sizes = torch.bincount(labels.flatten())
    assert len(sizes) == -(-320 // 7)
    assert (sizes[:-1] == 7).all() and sizes[-1] == 320 - 7 * 45
    # The global last stage has a single cluster.
    assert records['layers.3.blocks.0.attn'][0].unique().tolist() == [0]


def test_paper_mode_keeps_the_number_of_clusters():
    model = small_model().eval()
    with torch.no_grad(), record_cluster_assignments(model) as records:
        model(torch.rand(2, 3, 64, 96))  # stage 0: 16 x 24 = 384 tokens
    labels = records['layers.0.blocks.0.attn'][0]
    for image_labels in labels.flatten(1):
        assert torch.bincount(image_labels).tolist() == [96] * 4


def test_forced_orders_replace_the_ranking_of_the_named_blocks():
    # float64: the forced ranking is the model's own, so any difference
    # would be the mechanism's, not rounding.
    model = small_model().double().eval()
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64)
    name = 'layers.0.blocks.0.attn'
    with torch.no_grad(), record_cluster_assignments(model) as records:
        expected = model(x)
    tokens = 16 * 24
    own = records[name][0].flatten(2).argsort(dim=-1, stable=True)
    assert torch.equal(cluster_labels(own, tokens // 4), records[name][0]
                       .flatten(2))
    with torch.no_grad(), forced_cluster_orders(model, {name: own}):
        same = model(x)
    for out, ref in zip(same, expected):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)

    # Another ranking (the last token of each cluster moved to the next):
    # the block clusters by it, the others by their own.
    other = own.roll(1, dims=-1)
    with torch.no_grad(), forced_cluster_orders(model, {name: other}), \
            record_cluster_assignments(model) as forced:
        changed = model(x)
    assert torch.equal(forced[name][0].flatten(2),
                       cluster_labels(other, tokens // 4))
    assert not torch.allclose(changed[0], expected[0])
    # Outside the context the model ranks by itself again.
    assert model.layers[0].blocks[0].attn.forced_order is None
    # A ranking of another input is refused, not used.
    with pytest.raises(ValueError, match=r'\(batch, heads, tokens\)'):
        with torch.no_grad(), forced_cluster_orders(model, {name: own}):
            model(torch.rand(1, 3, 64, 64, dtype=torch.float64))
    with pytest.raises(KeyError, match='layers.9'):
        with forced_cluster_orders(model, {'layers.9.attn': own}):
            pass


def test_out_norm_false_returns_raw_stage_outputs():
    # float64: memory layouts differ between the two paths, and a rounding
    # difference can move a token to another cluster in float32.
    model = small_model(out_norm=False).double().eval()
    assert not any(name.startswith('norm') for name, _ in
                   model.named_parameters())
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        raw = model(x)
        stem = model.patch_embed(x)
        first, _ = model.layers[0](stem)
    torch.testing.assert_close(raw[0], first)


def test_out_norm_adds_a_norm_per_output_only():
    model = small_model(out_indices=(1, 3))
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3')
    assert not hasattr(model, 'norm0') and not hasattr(model, 'norm2')


def _grad_flags(module: nn.Module) -> set:
    return {p.requires_grad for p in module.parameters()}


def test_frozen_stages_stop_gradients_and_stay_in_eval():
    model = small_model(frozen_stages=2)
    model.train()
    for module in [model.patch_embed, model.layers[0], model.layers[1],
                   model.norm0, model.norm1]:
        assert _grad_flags(module) == {False}
        assert all(not m.training for m in module.modules())
    for module in [model.layers[2], model.layers[3], model.norm2]:
        assert _grad_flags(module) == {True}
        assert module.training
    before = model.layers[0].blocks[0].attn.qkv.weight.clone()
    bn_mean = model.patch_embed.proj[1].running_mean.clone()
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=1.)
    sum(o.sum() for o in model(torch.rand(2, 3, 64, 64))).backward()
    optimizer.step()
    torch.testing.assert_close(model.layers[0].blocks[0].attn.qkv.weight,
                               before)
    torch.testing.assert_close(model.patch_embed.proj[1].running_mean,
                               bn_mean)


def test_norm_eval_keeps_batchnorm_statistics():
    model = small_model(norm_eval=True)
    assert model.train() is model
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not bn.training for bn in bns)
    stats = [bn.running_mean.clone() for bn in bns]
    model(torch.rand(2, 3, 64, 64))
    for bn, before in zip(bns, stats):
        torch.testing.assert_close(bn.running_mean, before)
    assert model.layers[0].training  # everything else still trains


def test_train_returns_self():
    model = small_model()
    assert model.train() is model
    assert model.train(False) is model and not model.training


def outputs_and_gradients(model, x, seed=0):
    """One training forward and backward (drop path on, BN with batch
    statistics, the same random draws for every model)."""
    model.train()
    torch.manual_seed(seed)
    outs = model(x)
    sum((o**2).mean() for o in outs).backward()
    return outs, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize('with_cp', [True, 'full', 'selective'])
def test_with_cp_gives_the_same_outputs_and_gradients(with_cp):
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    plain = small_model(drop_path_rate=0.3).double()
    checkpointed = small_model(drop_path_rate=0.3, with_cp=with_cp).double()
    outs, grads = outputs_and_gradients(plain, x)
    cp_outs, cp_grads = outputs_and_gradients(checkpointed, x)
    for out, cp_out in zip(outs, cp_outs):
        torch.testing.assert_close(cp_out, out, rtol=0, atol=1e-12)
    assert grads.keys() == cp_grads.keys()
    for name in grads:
        torch.testing.assert_close(
            cp_grads[name], grads[name], rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize('with_cp', [False, 'selective'])
def test_float32_training_paths_give_the_plain_gradients(with_cp):
    # float32 takes the CPU-only training paths (LePE's assembled weight
    # gradient); the float64 tests above and the reference gradients run
    # the plain ones.
    x = torch.rand(2, 3, 64, 64)
    fast = small_model(with_cp=with_cp)
    plain = small_model(with_cp=with_cp)
    spy = mock.patch.object(
        depthwise_conv, 'depthwise_weight_grad_by_3x3',
        wraps=depthwise_conv.depthwise_weight_grad_by_3x3)
    with spy as assembled:
        outs, grads = outputs_and_gradients(fast, x)
    assert assembled.call_count == sum(fast.depths)
    with mock.patch.object(depthwise_conv, '_fast_weight_grad_applies',
                           return_value=False):
        plain_outs, plain_grads = outputs_and_gradients(plain, x)
    for out, plain_out in zip(outs, plain_outs):
        torch.testing.assert_close(out, plain_out, rtol=0, atol=0)
    for name in grads:
        torch.testing.assert_close(
            grads[name], plain_grads[name], rtol=1e-4, atol=1e-5, msg=name)


class _CountOps(TorchDispatchMode):
    """Counts the calls of the given operators run while it is active."""

    def __init__(self, *ops):
        super().__init__()
        self.ops = ops
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.ops:
            self.count += 1
        return func(*args, **(kwargs or {}))


# The recomputation stops after the last tensor the backward needs, so
# fc2 (whose output no backward uses) never runs again.
@pytest.mark.parametrize('with_cp, recomputed_per_block', [
    (False, 0),
    ('selective', 4),  # pos, lepe, out_proj, the FFN's depth-wise conv
    ('full', 6),  # and qkv, fc1
])
def test_checkpointing_recomputes_the_convolutions_it_should(
        with_cp, recomputed_per_block):
    model = small_model(with_cp=with_cp)
    outs = model(torch.rand(2, 3, 32, 32))
    loss = sum(o.mean() for o in outs)
    with _CountOps(torch.ops.aten.convolution.default) as counter:
        loss.backward()
    assert counter.count == recomputed_per_block * sum(model.depths)


@pytest.mark.parametrize('with_cp, sorted_again', [(False, False),
                                                   ('selective', False),
                                                   ('full', True)])
def test_selective_checkpointing_keeps_the_ranking(with_cp, sorted_again):
    model = small_model(with_cp=with_cp)
    sort = torch.ops.aten.sort.default, torch.ops.aten.sort.stable
    with _CountOps(*sort) as forward:
        outs = model(torch.rand(2, 3, 64, 64))
    with _CountOps(*sort) as backward:
        sum(o.mean() for o in outs).backward()
    assert forward.count > 0
    assert backward.count == (forward.count if sorted_again else 0)


def test_unknown_with_cp_is_rejected():
    with pytest.raises(ValueError, match='with_cp must be'):
        SecViT(arch=copy.deepcopy(TEST_ARCH), with_cp='some')


def test_drop_path_rate_defaults_to_the_arch_and_can_be_overridden():
    assert SecViT(arch='small').drop_path_rate == 0.15
    model = SecViT(arch='small', drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob for stage in model.layers
             for b in stage.blocks if hasattr(b.drop_path, 'drop_prob')]
    assert max(rates) == pytest.approx(0.3)


def test_get_layer_depth():
    model = SecViT(arch='tiny')  # depths 2, 2, 9, 2: 15 blocks
    assert model.get_layer_depth('backbone.patch_embed.proj.0.weight',
                                 'backbone.') == (0, 17)
    assert model.get_layer_depth('layers.0.blocks.0.attn.qkv.weight') == (1,
                                                                          17)
    assert model.get_layer_depth('layers.2.blocks.3.ffn.fc1.weight') == (8,
                                                                         17)
    assert model.get_layer_depth('layers.1.downsample.norm.weight') == (4,
                                                                        17)
    assert model.get_layer_depth('norm3.norm.weight') == (16, 17)
    assert model.get_layer_depth('neck.conv.weight', 'backbone.') == (16, 17)


def test_default_init_follows_the_authors():
    model = SecViT(arch=TEST_ARCH)
    model.init_weights()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.1)
    assert all((m.bias == 0).all() for m in convs if m.bias is not None)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16])
def test_runs_in_the_model_dtype(dtype):
    model = small_model().to(dtype).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 40, 56, dtype=dtype))
    assert all(o.dtype == dtype and torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('norm_type', ['SyncBN', 'MMSyncBN'])
def test_crop_batch_padding_refuses_syncbn_with_batch_statistics(norm_type):
    with pytest.raises(ValueError, match='SyncBN') as info:
        SecViT(arch=TEST_ARCH, crop_batch_padding=True,
               norm_cfg=dict(type=norm_type, requires_grad=True))
    assert 'set norm_eval=True' in str(info.value)
    # In eval mode without running statistics mmcv's SyncBatchNorm still
    # syncs batch statistics: norm_eval alone does not help then.
    with pytest.raises(ValueError, match='track_running_stats') as info:
        SecViT(arch=TEST_ARCH, crop_batch_padding=True, norm_eval=True,
               norm_cfg=dict(type=norm_type, track_running_stats=False))
    assert 'remove track_running_stats=False' in str(info.value)


def test_crop_batch_padding_with_syncbn_and_norm_eval_never_syncs(
        monkeypatch):
    """With norm_eval=True, SyncBN normalises by its running statistics and
    never syncs, so per-size passes cannot deadlock: the combination builds,
    and it runs like BN in eval and in train mode."""
    sync = small_model(
        crop_batch_padding=True,
        norm_eval=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
    bn = small_model(crop_batch_padding=True, norm_eval=True)
    bn.load_state_dict(sync.state_dict())
    # Two distinct image sizes: two passes through every norm layer.
    batch = torch.zeros(2, 3, 64, 96)
    batch[0, :, :40, :56] = torch.randn(3, 40, 56)
    batch[1] = torch.randn(3, 64, 96)
    # A SyncBN that synced would now try to (and on CPU raise).
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    for mode in (False, True):
        sync.train(mode)
        bn.train(mode)
        torch.manual_seed(0)
        outs = sync(batch)
        torch.manual_seed(0)
        expected = bn(batch)
        for out, ref in zip(outs, expected):
            torch.testing.assert_close(out, ref)
    sum(out.sum() for out in outs).backward()
    # The premise: SyncBN in training mode would sync (without cropping;
    # with it the forward refuses it before, see the test below).
    sync.norm_eval = False
    sync.crop_batch_padding = False
    sync.train()
    with pytest.raises(ValueError, match='SyncBatchNorm expected input'):
        sync(batch)


def _two_size_batch() -> torch.Tensor:
    batch = torch.zeros(2, 3, 64, 96)
    batch[0, :, :40, :56] = torch.randn(3, 40, 56)
    batch[1] = torch.randn(3, 64, 96)
    return batch


class _SyncFails:
    """Stands for mmcv's ``SyncBatchNormFunction``: fails if it runs."""

    @staticmethod
    def apply(*args):
        raise AssertionError("mmcv's SyncBatchNorm synced")


@pytest.fixture
def syncing_fails(monkeypatch):
    """A SyncBN layer that syncs fails: torch's finds a process group and
    refuses the CPU input, mmcv's function raises. mmcv's SyncBatchNorm
    asks the world size when it is built."""
    import mmcv.ops.sync_bn as mmcv_sync_bn
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'get_world_size',
                        lambda group=None: 1)
    monkeypatch.setattr(mmcv_sync_bn, 'SyncBatchNormFunction', _SyncFails)


def _convert(model: SecViT, implementation: str) -> SecViT:
    if implementation == 'torch':
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from mmengine.model import convert_sync_batchnorm
    return convert_sync_batchnorm(model, implementation)


@pytest.mark.parametrize('implementation', ['torch', 'mmcv'])
@pytest.mark.parametrize('two_sizes', [True, False])
def test_crop_batch_padding_refuses_syncbn_converted_after_building(
        implementation, two_sizes, syncing_fails):
    """SyncBN from MMEngine's sync_bn option (or convert_sync_batchnorm by
    hand) escapes the constructor's check: the forward refuses it, on every
    rank whatever the sizes of its batch, before any norm layer runs."""
    model = _convert(small_model(crop_batch_padding=True), implementation)
    model.train()
    syncs = [m for m in model.modules() if 'SyncBatchNorm' in type(m).__name__]
    assert syncs and all(m.training for m in syncs)
    tracked = [m.num_batches_tracked.clone() for m in syncs]
    batch = _two_size_batch() if two_sizes else torch.randn(2, 3, 64, 96)
    with pytest.raises(ConfigValueError) as info:
        model(batch)
    message = str(info.value)
    for part in ('crop_batch_padding=True', 'SyncBatchNorm',
                 'patch_embed.proj.1', 'hang', 'set norm_eval=True',
                 'remove sync_bn', 'crop_batch_padding=False'):
        assert part in message, part
    # No norm layer ran.
    for module, before in zip(syncs, tracked):
        torch.testing.assert_close(module.num_batches_tracked, before)


@pytest.mark.parametrize('implementation', ['torch', 'mmcv'])
def test_converted_syncbn_with_norm_eval_or_in_eval_mode_runs(
        implementation, syncing_fails):
    """norm_eval=True keeps the converted SyncBN layers in eval mode
    (running statistics, folded, never synced), and so does model.eval():
    both run, with BN's results."""
    bn = small_model(crop_batch_padding=True, norm_eval=True)
    sync = _convert(copy.deepcopy(bn), implementation)
    frozen_bn = small_model(crop_batch_padding=True)
    frozen_sync = _convert(copy.deepcopy(frozen_bn), implementation)
    batch = _two_size_batch()
    for model, ref, mode in [(sync, bn, True), (sync, bn, False),
                             (frozen_sync, frozen_bn, False)]:
        model.train(mode)
        ref.train(mode)
        torch.manual_seed(0)
        outs = model(batch)
        torch.manual_seed(0)
        expected = ref(batch)
        for out, ref_out in zip(outs, expected):
            torch.testing.assert_close(out, ref_out)
    # After training mode the guard sees the layers again.
    frozen_sync.train()
    with pytest.raises(ConfigValueError, match='SyncBatchNorm'):
        frozen_sync(batch)


def test_mmcv_syncbn_without_running_statistics_is_refused_in_eval_mode(
        syncing_fails):
    """mmcv's SyncBatchNorm without running statistics syncs in eval mode
    too, so neither model.eval() nor norm_eval=True helps."""
    model = _convert(
        small_model(
            crop_batch_padding=True,
            norm_eval=True,
            norm_cfg=dict(type='BN', track_running_stats=False)), 'mmcv')
    for mode in (True, False):
        model.train(mode)
        with pytest.raises(ConfigValueError,
                           match='track_running_stats=True'):
            model(_two_size_batch())


def test_syncbn_without_crop_batch_padding_is_not_refused():
    model = nn.SyncBatchNorm.convert_sync_batchnorm(small_model()).train()
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    # No process group: torch's SyncBatchNorm normalises like BN.
    outs = model(_two_size_batch())
    assert all(torch.isfinite(out).all() for out in outs)


def test_the_syncbn_guard_sees_every_batchnorm():
    """The forward's guard looks at the stem and the downsamples only: they
    must hold every BatchNorm layer of the backbone."""
    model = small_model(crop_batch_padding=True, frozen_stages=1)
    seen = {id(m) for _, holder in model._norm_holders()
            for m in holder.modules()}
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    assert len(norms) == 4 + 3
    assert all(id(m) in seen for m in norms)


def test_selective_checkpointing_on_an_old_torch_says_what_to_do(
        monkeypatch):
    monkeypatch.setattr(activation_checkpoint,
                        'create_selective_checkpoint_contexts', None)
    with pytest.raises(RuntimeError, match=r'torch >= 2.4.*with_cp=True'):
        SecViT(arch=copy.deepcopy(TEST_ARCH), with_cp='selective')
    # Nothing else depends on it.
    SecViT(arch=copy.deepcopy(TEST_ARCH), with_cp=True)


def test_parse_arch_reads_names_json_and_dict_literals():
    assert parse_arch(' S ') == 's'
    arch = parse_arch(arch_literal())
    assert arch == TEST_ARCH
    assert isinstance(SecViT(arch=arch), SecViT)
    assert parse_arch(str(TEST_ARCH)) == TEST_ARCH
    assert parse_arch(json.dumps(TEST_ARCH)) == TEST_ARCH
    with pytest.raises(ValueError, match='Unknown SecViT arch'):
        parse_arch('huge')
    with pytest.raises(ValueError, match='values of dict'):
        parse_arch('dict(depths=list(range(4)))')
    with pytest.raises(ValueError, match='JSON object or a dict literal'):
        parse_arch('{depths: [1, 1]}')


@pytest.mark.parametrize('out_indices', [(1, 1), (3, -1), [0, 2, 2, 3]])
def test_a_stage_named_twice_in_out_indices_is_refused(out_indices):
    """One map per stage: a repeated stage would silently give fewer maps
    than the neck expects."""
    with pytest.raises(ConfigValueError, match='name a stage twice'):
        SecViT(arch=TEST_ARCH, out_indices=out_indices)
