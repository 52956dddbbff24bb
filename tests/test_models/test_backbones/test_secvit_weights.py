# Copyright (c) mmsecvit contributors. All rights reserved.
import argparse
import copy
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from mmsecvit.models import SecViT
from mmsecvit.models.backbones import infer_arch, secvit_weights
from mmsecvit.models.backbones.secvit_weights import CheckpointMismatchError
from mmsecvit.testing import TEST_ARCH, randomize_weights

REPO = Path(__file__).resolve().parents[3]


def authors_state_dict(arch, seed):
    """A state dict laid out as the authors' classification model: backbone
    tensors (no output norms) plus the classifier's proj/norm/head."""
    model = randomize_weights(SecViT(arch=arch, out_norm=False), seed=seed)
    state_dict = model.state_dict()
    last = model.embed_dims[-1]
    state_dict.update({
        'proj.weight': torch.randn(1024, last, 1, 1),
        'proj.bias': torch.randn(1024),
        'norm.weight': torch.ones(1024),
        'norm.bias': torch.zeros(1024),
        'norm.running_mean': torch.zeros(1024),
        'norm.running_var': torch.ones(1024),
        'norm.num_batches_tracked': torch.tensor(5),
        'head.weight': torch.randn(1000, 1024, 1, 1),
        'head.bias': torch.randn(1000),
    })
    return state_dict


@pytest.fixture
def official_checkpoint(tmp_path):
    """A file in the format the authors publish."""
    path = tmp_path / 'secvit_official.pth'
    torch.save(
        dict(
            model=authors_state_dict(TEST_ARCH, seed=1),
            model_ema=authors_state_dict(TEST_ARCH, seed=2),
            optimizer=dict(state={}, param_groups=[]),
            epoch=299,
            max_accuracy=84.2,
            args=argparse.Namespace(model='KClusterFormerSimpleNew_S',
                                    lr=1e-3)), path)
    return path


def pretrained(path, **kwargs):
    return SecViT(
        arch=copy.deepcopy(TEST_ARCH),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)),
        **kwargs)


@pytest.mark.parametrize('key, seed', [('model', 1), ('model_ema', 2)])
def test_official_checkpoint_loads_the_chosen_weights(official_checkpoint,
                                                      key, seed):
    model = pretrained(official_checkpoint, checkpoint_key=key)
    norm_before = model.norm0.norm.weight.clone()
    model.init_weights()
    expected = randomize_weights(
        SecViT(arch=TEST_ARCH, out_norm=False), seed=seed).state_dict()
    loaded = model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(loaded[name], value, msg=name)
    # Output norms are not in ImageNet checkpoints: left as initialised.
    torch.testing.assert_close(model.norm0.norm.weight, norm_before)


def test_checkpoint_of_another_arch_gets_a_clear_error(tmp_path):
    path = tmp_path / 'other.pth'
    other = dict(TEST_ARCH, depths=[1, 1, 2, 1])
    torch.save(dict(model=authors_state_dict(other, seed=0)), path)
    model = pretrained(path)
    with pytest.raises(CheckpointMismatchError) as info:
        model.init_weights()
    message = str(info.value)
    assert str(path) in message and 'layers.2.blocks.1' in message
    assert 'arch' in message


def test_checkpoint_with_other_widths_names_the_shapes(tmp_path):
    path = tmp_path / 'wide.pth'
    wide = dict(TEST_ARCH, embed_dims=[64, 64, 128, 256],
                num_heads=[2, 2, 4, 8])
    torch.save(dict(model=authors_state_dict(wide, seed=0)), path)
    with pytest.raises(CheckpointMismatchError,
                       match=r'other shapes: patch_embed\.proj'):
        pretrained(path).init_weights()


def test_missing_pretrained_file_says_how_to_fix_it(tmp_path):
    model = pretrained(tmp_path / 'nowhere.pth')
    with pytest.raises(FileNotFoundError) as info:
        model.init_weights()
    assert 'nowhere.pth' in str(info.value)
    assert 'init_cfg=None' in str(info.value)


def test_unknown_checkpoint_key_is_reported(official_checkpoint):
    model = pretrained(official_checkpoint, checkpoint_key='model_swa')
    with pytest.raises(CheckpointMismatchError, match="no 'model_swa'"):
        model.init_weights()


def test_ema_weights_asked_for_are_never_replaced_by_plain_ones(tmp_path):
    """Before, checkpoint_key='model_ema' on a file without EMA weights
    loaded the plain ones and said nothing."""
    path = tmp_path / 'plain.pth'
    torch.save(authors_state_dict(TEST_ARCH, seed=1), path)
    model = pretrained(path, checkpoint_key='model_ema')
    with pytest.raises(CheckpointMismatchError, match="no 'model_ema'"):
        model.init_weights()
    pretrained(path).init_weights()  # 'model' (the default) falls back


def test_a_file_converted_from_the_ema_weights_loads_as_model_ema(
        tmp_path):
    """What secvit2mmsecvit.py --ema writes: the EMA weights under
    'state_dict', and which they were in its meta."""
    state_dict = authors_state_dict(TEST_ARCH, seed=2)
    path = tmp_path / 'converted_ema.pth'
    torch.save(
        dict(state_dict=state_dict, meta=dict(checkpoint_key='model_ema')),
        path)
    model = pretrained(path, checkpoint_key='model_ema')
    model.init_weights()
    torch.testing.assert_close(model.state_dict()['patch_embed.proj.0.weight'],
                               state_dict['patch_embed.proj.0.weight'])
    # A file converted from the plain weights is not taken for EMA ones.
    torch.save(
        dict(state_dict=state_dict, meta=dict(checkpoint_key='model')), path)
    with pytest.raises(CheckpointMismatchError, match="no 'model_ema'"):
        pretrained(path, checkpoint_key='model_ema').init_weights()


def test_the_entries_offered_are_those_holding_weights(official_checkpoint):
    model = pretrained(official_checkpoint, checkpoint_key='model_swa')
    with pytest.raises(CheckpointMismatchError) as info:
        model.init_weights()
    message = str(info.value)
    assert "['model', 'model_ema']" in message
    assert "the backbone's checkpoint_key" in message
    assert 'optimizer' not in message and 'epoch' not in message


def test_a_missing_batch_count_is_not_missing(tmp_path):
    """torch's BatchNorm loads without num_batches_tracked; the right arch
    was refused as another one."""
    state_dict = {
        k: v
        for k, v in authors_state_dict(TEST_ARCH, seed=1).items()
        if not k.endswith('num_batches_tracked')
    }
    path = tmp_path / 'no_counts.pth'
    torch.save(dict(model=state_dict), path)
    model = pretrained(path)
    model.init_weights()
    torch.testing.assert_close(model.state_dict()['patch_embed.proj.0.weight'],
                               state_dict['patch_embed.proj.0.weight'])


def test_a_prefix_that_selects_no_backbone_tensor_says_so(tmp_path):
    source = SecViT(arch=TEST_ARCH).state_dict()
    state_dict = {f'backbone.{k}': v for k, v in source.items()}
    state_dict['neck.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'detector.pth'
    torch.save(dict(state_dict=state_dict), path)
    model = SecViT(
        arch=copy.deepcopy(TEST_ARCH),
        init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='neck'))
    with pytest.raises(CheckpointMismatchError) as info:
        model.init_weights()
    assert 'holds no tensor of a SecViT backbone' in str(info.value)
    assert 'Pick the arch' not in str(info.value)


def test_detector_checkpoint_loads_through_the_backbone_prefix(tmp_path):
    source = randomize_weights(SecViT(arch=TEST_ARCH), seed=3)
    state_dict = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state_dict['neck.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'detector.pth'
    torch.save(dict(state_dict=state_dict, meta=dict(epoch=12)), path)
    model = pretrained(path)
    model.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)


@pytest.mark.parametrize('prefix', ['backbone', 'backbone.'])
def test_an_explicit_prefix_may_omit_the_dot(tmp_path, prefix):
    """MMEngine's ``Pretrained`` init takes ``prefix='backbone'``."""
    source = randomize_weights(SecViT(arch=TEST_ARCH), seed=3)
    path = tmp_path / 'detector.pth'
    save_detector_checkpoint(path, source)
    model = SecViT(
        arch=TEST_ARCH,
        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                      prefix=prefix))
    model.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)


def test_a_list_init_cfg_initialises_then_loads(official_checkpoint):
    """As MMEngine's ``BaseModule`` does: the other initialisers first, the
    checkpoint over them; what it lacks (the output norms) keeps theirs."""
    model = SecViT(
        arch=TEST_ARCH,
        init_cfg=[
            dict(type='Constant', layer='LayerNorm', val=3.0),
            dict(type='Pretrained', checkpoint=str(official_checkpoint)),
        ])
    model.init_weights()
    expected = randomize_weights(
        SecViT(arch=TEST_ARCH, out_norm=False), seed=1).state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert torch.all(model.norm0.norm.weight == 3.0)
    # Without a checkpoint, only the initialisers.
    model = SecViT(
        arch=TEST_ARCH,
        init_cfg=[dict(type='Constant', layer='LayerNorm', val=2.0)])
    model.init_weights()
    assert torch.all(model.layers[0].blocks[0].norm1.norm.weight == 2.0)


@pytest.mark.parametrize('init_cfg, error, match', [
    (['Pretrained'], 'ConfigTypeError', 'a dict or a list of dicts'),
    ([dict(type='Pretrained', checkpoint='a.pth'),
      dict(type='Pretrained', checkpoint='b.pth')], 'ConfigValueError',
     '2 Pretrained entries'),
    (dict(type='Pretrained'), 'ConfigKeyError', 'needs checkpoint=PATH'),
])
def test_bad_init_cfg_is_refused_clearly(init_cfg, error, match):
    model = SecViT(arch=TEST_ARCH, init_cfg=init_cfg)
    with pytest.raises(Exception, match=match) as info:
        model.init_weights()
    assert type(info.value).__name__ == error


def save_detector_checkpoint(path, source):
    state_dict = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    torch.save(dict(state_dict=state_dict, meta=dict(epoch=12)), path)


def test_output_norms_of_other_stages_are_skipped(tmp_path, monkeypatch):
    # A Mask R-CNN / UperNet backbone (norm0..norm3) initialises a
    # RetinaNet one (out_indices=(1, 2, 3), no norm0).
    source = randomize_weights(SecViT(arch=TEST_ARCH), seed=6)
    path = tmp_path / 'mask_rcnn.pth'
    save_detector_checkpoint(path, source)
    logger = mock.Mock()
    monkeypatch.setattr(secvit_weights.MMLogger, 'get_current_instance',
                        lambda: logger)
    model = pretrained(path, out_indices=(1, 2, 3))
    assert not hasattr(model, 'norm0')
    model.init_weights()
    loaded = model.state_dict()
    expected = source.state_dict()
    for name, value in loaded.items():
        torch.testing.assert_close(value, expected[name], msg=name)
    logged = ' '.join(str(call.args[0]) for call in logger.info.call_args_list)
    assert 'skipped: norm0.norm.weight, norm0.norm.bias' in logged
    # Without output norms, all of them are skipped.
    model = pretrained(path, out_norm=False)
    model.init_weights()
    assert all(
        torch.equal(value, expected[name])
        for name, value in model.state_dict().items())


def test_surplus_output_norm_of_another_width_is_refused(tmp_path):
    source = SecViT(arch=TEST_ARCH).state_dict()
    source['norm0.norm.weight'] = torch.ones(7)
    path = tmp_path / 'odd_norm.pth'
    torch.save(dict(state_dict=source), path)
    model = pretrained(path, out_indices=(1, 2, 3))
    with pytest.raises(CheckpointMismatchError,
                       match=r'other shapes: norm0\.norm\.weight: checkpoint '
                       r'\(7,\) vs \(32,\) for the output norm of stage 0'):
        model.init_weights()
    # The same for an output norm that the model has.
    with pytest.raises(CheckpointMismatchError,
                       match=r'other shapes: norm0\.norm\.weight'):
        pretrained(path).init_weights()


@pytest.mark.parametrize('key', [
    'neck.conv.weight', 'norm9.norm.weight', 'norm1.extra',
    'layers.0.blocks.0.extra'
])
def test_other_surplus_tensors_are_still_refused(tmp_path, key):
    source = SecViT(arch=TEST_ARCH).state_dict()
    source[key] = torch.zeros(1)
    path = tmp_path / 'surplus.pth'
    torch.save(dict(state_dict=source), path)
    with pytest.raises(CheckpointMismatchError,
                       match=rf'1 tensors the model lacks: {re.escape(key)}'):
        pretrained(path, out_indices=(1, 2, 3)).init_weights()


def test_infer_arch_recognises_the_zoo_archs():
    state_dict = SecViT(arch='tiny', out_norm=False).state_dict()
    assert infer_arch(state_dict) == 'tiny'
    assert infer_arch({'foo': torch.zeros(1)}) is None


def test_converter_writes_a_loadable_backbone_checkpoint(tmp_path):
    src = tmp_path / 'official.pth'
    torch.save(
        dict(
            model=authors_state_dict('tiny', seed=4),
            model_ema=authors_state_dict('tiny', seed=5),
            args=argparse.Namespace(lr=1.)), src)
    dst = tmp_path / 'converted.pth'
    result = subprocess.run([
        sys.executable, 'tools/model_converters/secvit2mmsecvit.py',
        str(src), str(dst), '--ema'
    ], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 'SecViT-tiny' in result.stdout
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['checkpoint_key'] == 'model_ema'
    assert not any(k.startswith(('head.', 'proj.', 'norm.'))
                   for k in converted['state_dict'])
    model = SecViT(arch='tiny',
                   init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    expected = randomize_weights(
        SecViT(arch='tiny', out_norm=False), seed=5).state_dict()
    for name in ('layers.2.blocks.8.attn.qkv.weight',
                 'patch_embed.proj.10.running_var'):
        torch.testing.assert_close(model.state_dict()[name], expected[name])


@pytest.mark.parametrize('ema', [False, True])
def test_converter_names_its_own_option_for_the_weights(tmp_path, ema):
    """An EMA-only file without --ema, or a file without EMA weights with
    --ema: refused, naming --ema (the converter has no checkpoint_key),
    and nothing is written."""
    src = tmp_path / 'official.pth'
    key = 'model' if ema else 'model_ema'
    torch.save({key: authors_state_dict('tiny', seed=4)}, src)
    result = subprocess.run([
        sys.executable, 'tools/model_converters/secvit2mmsecvit.py',
        str(src), str(tmp_path / 'out.pth')
    ] + (['--ema'] if ema else []),
                            cwd=REPO,
                            capture_output=True,
                            text=True)
    assert result.returncode == 2, result.stderr
    assert f"its entries of weights are ['{key}']" in result.stderr
    assert '--ema' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_converter_refuses_a_file_of_no_known_arch(tmp_path):
    src = tmp_path / 'custom.pth'
    torch.save(dict(model=authors_state_dict(TEST_ARCH, seed=0)), src)
    result = subprocess.run([
        sys.executable, 'tools/model_converters/secvit2mmsecvit.py',
        str(src), str(tmp_path / 'out.pth')
    ], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'does not hold the weights of any SecViT arch' in result.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_deprecated_pretrained_loads_as_init_cfg_does(official_checkpoint):
    with pytest.warns(FutureWarning, match='init_cfg'):
        model = SecViT(
            arch=copy.deepcopy(TEST_ARCH),
            pretrained=str(official_checkpoint))
    assert model.init_cfg == dict(
        type='Pretrained', checkpoint=str(official_checkpoint))
    model.init_weights()
    reference = pretrained(official_checkpoint)
    reference.init_weights()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_pretrained_and_init_cfg_together_are_refused(official_checkpoint):
    with pytest.raises(ValueError, match='model.pretrained=None'):
        SecViT(
            arch=copy.deepcopy(TEST_ARCH),
            pretrained=str(official_checkpoint),
            init_cfg=dict(type='Pretrained', checkpoint='other.pth'))


def test_pretrained_must_be_a_path():
    with pytest.raises(TypeError, match='pretrained must be a checkpoint'):
        SecViT(arch=copy.deepcopy(TEST_ARCH), pretrained=True)


def test_a_model_built_on_meta_is_fully_initialised(official_checkpoint):
    """Built on the meta device and materialised with to_empty() (deferred
    initialisation, FSDP), every tensor is uninitialised memory until
    init_weights: the output norms the checkpoint lacks, the RoPE
    frequencies and BatchNorm's statistics were left so."""
    reference = pretrained(official_checkpoint)
    reference.init_weights()
    with torch.device('meta'):
        model = pretrained(official_checkpoint)
    model = model.to_empty(device='cpu')
    model.init_weights()
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(
            model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    with torch.device('meta'):
        fresh = SecViT(arch=copy.deepcopy(TEST_ARCH))
    fresh = fresh.to_empty(device='cpu')
    fresh.init_weights()
    built = SecViT(arch=copy.deepcopy(TEST_ARCH)).state_dict()
    for name, value in fresh.state_dict().items():
        if not name.endswith(('.weight', '.bias')) or 'norm' in name:
            torch.testing.assert_close(value, built[name], msg=name)


def test_layer_scales_of_a_model_built_on_meta_are_initialised():
    arch = dict(copy.deepcopy(TEST_ARCH), layer_scales=[False, True, True,
                                                        True])
    with torch.device('meta'):
        model = SecViT(arch=arch)
    model = model.to_empty(device='cpu')
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.fill_(float('nan'))
    model.init_weights()
    uninitialised = [
        name for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and tensor.isnan().any()
    ]
    assert uninitialised == []
    gamma = model.layers[1].blocks[0].gamma_1
    torch.testing.assert_close(gamma, torch.full_like(gamma, 1e-6))


def test_a_half_precision_model_loads_its_own_weights_silently(recwarn):
    model = SecViT(arch=copy.deepcopy(TEST_ARCH)).half()
    model.load_state_dict(model.state_dict())
    assert not [w for w in recwarn if 'RoPE' in str(w.message)]


def test_rope_frequencies_rounded_in_a_checkpoint_are_recomputed(tmp_path):
    """A checkpoint saved in half precision holds the frequencies rounded
    (by up to 3e-4): the exact ones are used, with a warning."""
    source = SecViT(arch=copy.deepcopy(TEST_ARCH))
    exact = source.layers[0].RoPE.angle.clone()
    state_dict = {
        k: v.half() if v.is_floating_point() else v
        for k, v in source.state_dict().items()
    }
    path = tmp_path / 'half.pth'
    torch.save(dict(state_dict=state_dict), path)
    model = pretrained(path)
    with pytest.warns(UserWarning, match='layers.0.RoPE.angle'):
        model.init_weights()
    torch.testing.assert_close(
        model.layers[0].RoPE.angle, exact, rtol=0, atol=0)
