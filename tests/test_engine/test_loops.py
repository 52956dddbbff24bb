# Copyright (c) mmsecvit contributors. All rights reserved.
""":class:`ResumableEpochBasedTrainLoop` continues a resumed epoch where its
checkpoint was taken, and only there: resumed with another epoch length
(another batch size or number of processes) it trains every epoch that is
left, in full."""
import logging
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmsecvit.engine import ResumableEpochBasedTrainLoop
from mmsecvit.engine.loops import EPOCH_START_KEY


class _Regression(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


class _Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)),
                    targets=torch.tensor(float(index)))


class _SeenSamples(Hook):
    """Keeps the targets (= sample indices) of every trained batch."""

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen.append([int(t) for t in data_batch['targets']])


def _runner(work_dir, max_epochs, batch_size, interval, resume=False):
    seen = _SeenSamples()
    runner = Runner(
        model=_Regression(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=_Points(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=batch_size,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(
            type=ResumableEpochBasedTrainLoop, max_epochs=max_epochs),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=interval),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[seen],
        randomness=dict(seed=0),
        resume=resume,
        experiment_name=f'{osp.basename(work_dir)}_{max_epochs}_{resume}',
        log_level=logging.WARNING)
    return runner, seen


class _Warnings(logging.Handler):
    """The loop's warnings about a resumed epoch."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if 'Resumed at iteration' in record.getMessage():
            self.messages.append(record.getMessage())


def _train(runner):
    warnings = _Warnings()
    runner.logger.addHandler(warnings)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(warnings)
    return warnings.messages


def _resume_from(work_dir, checkpoint):
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, checkpoint))


def test_resumed_in_an_epoch_trains_the_rest_of_it(tmp_path):
    whole, whole_seen = _runner(str(tmp_path / 'whole'), 2, 2, 100)
    whole.train()
    work_dir = str(tmp_path / 'exp')
    first, _ = _runner(work_dir, 1, 2, 3)
    first.train()
    _resume_from(work_dir, 'iter_3.pth')  # 3 of epoch 1's 4 iterations
    resumed, seen = _runner(work_dir, 2, 2, 100, resume=True)
    assert _train(resumed) == []
    # The last batch of epoch 1, then epoch 2 in full, as without the stop.
    assert seen.seen == whole_seen.seen[3:]
    assert resumed.message_hub.get_info(EPOCH_START_KEY) == dict(
        epoch=1, iter=4, iters=4)


@pytest.mark.parametrize('checkpoint', ['iter_3.pth', 'iter_4.pth'])
def test_resumed_with_another_epoch_length_trains_every_epoch_left(
        tmp_path, checkpoint):
    """Four iterations an epoch before, two after (twice the batch): the
    iterations done must not be counted in epochs of the new length
    (before, 4 done iterations made epoch 2 look done too, and a run of 3
    epochs trained 2 batches in all)."""
    work_dir = str(tmp_path / 'exp')
    first, _ = _runner(work_dir, 1, 2, 3)
    first.train()  # iter_3.pth, and iter_4.pth at the end of epoch 1
    _resume_from(work_dir, checkpoint)
    resumed, seen = _runner(work_dir, 3, 4, 100, resume=True)
    warnings = _train(resumed)
    assert all(len(batch) == 4 for batch in seen.seen)
    if checkpoint == 'iter_3.pth':
        # In the middle of epoch 1: which samples were trained on is
        # unknown, so epoch 1 runs again in full, then epochs 2 and 3.
        assert len(seen.seen) == 3 * 2
        assert len(warnings) == 1
        assert '3 iterations into epoch 1, from a run with 4 iterations ' \
            'an epoch; this run has 2' in warnings[0]
    else:
        # Epoch 1 had ended: epochs 2 and 3.
        assert len(seen.seen) == 2 * 2
        assert warnings == []
    assert resumed.epoch == 3


def test_checkpoint_without_the_epoch_start_resumes_as_before(tmp_path):
    """Checkpoints written before the epoch start was recorded: epochs are
    taken to have had this run's length."""
    whole, whole_seen = _runner(str(tmp_path / 'whole'), 2, 2, 100)
    whole.train()
    work_dir = str(tmp_path / 'exp')
    first, _ = _runner(work_dir, 1, 2, 3)
    first.train()
    path = osp.join(work_dir, 'iter_3.pth')
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint['message_hub']['runtime_info'][EPOCH_START_KEY]
    torch.save(checkpoint, path)
    _resume_from(work_dir, 'iter_3.pth')
    resumed, seen = _runner(work_dir, 2, 2, 100, resume=True)
    assert _train(resumed) == []
    assert seen.seen == whole_seen.seen[3:]
