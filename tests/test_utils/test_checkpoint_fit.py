# Copyright (c) mmsecvit contributors. All rights reserved.
"""A checkpoint is checked against the model it will load into, by what it
is loaded for, before MMEngine's non-strict loading would only warn."""
import pytest
import torch
import torch.nn as nn

from mmsecvit.utils.checkpoint_fit import (check_checkpoint_fits,
                                           checkpoint_state_dict,
                                           compare_state_dict)
from mmsecvit.utils.errors import CheckpointMismatchError, ConfigValueError


class Detector(nn.Module):

    def __init__(self, width=4, classes=3):
        super().__init__()
        self.backbone = nn.Conv2d(3, width, 3)
        self.head = nn.Linear(width, classes)


def resumable(state_dict):
    return dict(
        state_dict=state_dict,
        meta=dict(epoch=2, iter=40),
        optimizer=dict(state={}, param_groups=[]),
        message_hub=dict())


def test_the_same_model_fits_for_every_purpose():
    model = Detector()
    for purpose in ('evaluate', 'fine_tune', 'resume'):
        check_checkpoint_fits(model, resumable(model.state_dict()), 'x.pth',
                              purpose)


def test_ddp_prefixes_and_bare_state_dicts_are_read():
    model = Detector()
    prefixed = {f'module.{k}': v for k, v in model.state_dict().items()}
    assert list(checkpoint_state_dict({'state_dict':
                                       prefixed})) == list(model.state_dict())
    check_checkpoint_fits(model, model.state_dict(), 'bare.pth', 'evaluate')


def test_another_arch_is_refused_with_the_shapes():
    model, other = Detector(), Detector(width=8)
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint_fits(model, other.state_dict(), "'b.pth'", 'evaluate')
    message = str(info.value)
    assert "The checkpoint 'b.pth' does not fit the model" in message
    assert 'backbone.weight: checkpoint (8, 3, 3, 3) vs model (4, 3, 3, 3)' \
        in message
    assert '3 tensors with other shapes' in message


def test_another_model_is_refused_for_evaluation_and_resuming():
    model = Detector()
    state_dict = dict(model.state_dict())
    del state_dict['head.bias']
    state_dict['rpn.weight'] = torch.zeros(1)
    for purpose in ('evaluate', 'resume'):
        with pytest.raises(CheckpointMismatchError) as info:
            check_checkpoint_fits(model, resumable(state_dict), 'x.pth',
                                  purpose)
        assert '1 model tensors missing: head.bias.' in str(info.value)
        assert '1 tensors the model lacks: rpn.weight.' in str(info.value)


def test_fine_tuning_takes_other_heads_but_not_another_backbone():
    model = Detector(classes=3)
    # Another number of classes: MMEngine skips the head with a warning.
    check_checkpoint_fits(model,
                          Detector(classes=80).state_dict(), 'coco',
                          'fine_tune')
    with pytest.raises(CheckpointMismatchError, match='backbone.weight'):
        check_checkpoint_fits(model,
                              Detector(width=8).state_dict(), 'big',
                              'fine_tune')


def test_fine_tuning_from_a_checkpoint_with_nothing_of_the_model():
    """E.g. an ImageNet backbone given as load_from: no key has the
    ``backbone.`` prefix, nothing would load."""
    model = Detector()
    backbone_only = model.backbone.state_dict()
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint_fits(model, backbone_only, 'in1k.pth', 'fine_tune')
    assert '4 model tensors missing' in str(info.value)
    assert "model.backbone.init_cfg=dict(type='Pretrained'" in str(info.value)


@pytest.mark.parametrize('drop', ['meta', 'message_hub'])
def test_resuming_needs_the_training_state(drop):
    model = Detector()
    checkpoint = resumable(model.state_dict())
    del checkpoint[drop]
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint_fits(model, checkpoint, 'published.pth', 'resume')
    assert f'no {drop}' in str(info.value)
    assert 'load_from=PATH instead of resuming' in str(info.value)
    # The same weights evaluate and fine-tune.
    check_checkpoint_fits(model, checkpoint, 'published.pth', 'evaluate')


def test_resuming_without_an_optimizer_state_warns(monkeypatch):
    """CheckpointHook(save_optimizer=False) writes no optimizer state;
    MMEngine resumes such a file with a new one, and so may we."""
    from mmsecvit.utils import checkpoint_fit
    logged = []
    monkeypatch.setattr(checkpoint_fit, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    model = Detector()
    checkpoint = resumable(model.state_dict())
    check_checkpoint_fits(model, checkpoint, 'iter_4.pth', 'resume')
    assert logged == []
    del checkpoint['optimizer']
    check_checkpoint_fits(model, checkpoint, 'iter_4.pth', 'resume')
    (message, ) = logged
    assert 'iter_4.pth has no optimizer state' in message


def test_resuming_needs_the_epoch_and_iteration():
    model = Detector()
    checkpoint = resumable(model.state_dict())
    checkpoint['meta'] = dict(epoch=2)
    with pytest.raises(CheckpointMismatchError, match='meta.epoch/meta.iter'):
        check_checkpoint_fits(model, checkpoint, 'x.pth', 'resume')


def test_a_missing_batch_count_is_not_missing():
    """As in MMEngine: checkpoints of older torch lack it."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    state_dict = {
        k: v
        for k, v in model.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    check_checkpoint_fits(model, state_dict, 'old.pth', 'evaluate')


def test_compare_and_unknown_purpose():
    model = Detector()
    assert compare_state_dict(model, model.state_dict()) == ([], [], [])
    with pytest.raises(ConfigValueError, match='Unknown checkpoint purpose'):
        check_checkpoint_fits(model, {}, 'x.pth', 'train')
