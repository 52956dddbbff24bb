# Copyright (c) mmsecvit contributors. All rights reserved.
"""A run resumed from the checkpoint taken before a validation continues
exactly as the uninterrupted run, which validated there: validation leaves
the RNG states as it found them (:class:`ResumableCheckpointHook`)."""
import logging
import os.path as osp

import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmsecvit.engine import (ResumableCheckpointHook,
                             ResumableEpochBasedTrainLoop)


class _DropoutRegression(BaseModel):
    """Dropout in training, and a random draw in every validation step (as
    a random test-time transform would)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(self.dropout(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return list(out + torch.rand_like(out))


class _Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        inputs = torch.arange(4.) + index
        return dict(inputs=inputs, targets=inputs.sum())


class _Mean(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(float(value) for value in data_samples)

    def compute_metrics(self, results):
        return dict(mean=sum(results) / len(results))


class _StopAt(Hook):
    """Stops the process at an iteration, as a crash would."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.iteration:
            raise KeyboardInterrupt


def _runner(work_dir, name, stop_at=None, resume=False):
    loader = dict(
        dataset=_Points(),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2,
        num_workers=0,
        collate_fn=dict(type='default_collate'))
    return Runner(
        model=dict(type=_DropoutRegression),
        work_dir=work_dir,
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=dict(type=_Mean),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1e-3)),
        train_cfg=dict(
            type=ResumableEpochBasedTrainLoop, max_epochs=3, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(type=ResumableCheckpointHook, interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[] if stop_at is None else [_StopAt(stop_at)],
        randomness=dict(seed=0),
        resume=resume,
        experiment_name=name,
        log_level=logging.WARNING)


def test_resumed_after_a_validation_equals_the_uninterrupted_run(tmp_path):
    whole = _runner(str(tmp_path / 'whole'), 'whole')
    whole.train()
    work_dir = str(tmp_path / 'stopped')
    stopped = _runner(work_dir, 'stopped', stop_at=6)
    try:
        stopped.train()  # epoch_1.pth (then a validation), stop in epoch 2
    except KeyboardInterrupt:
        pass
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    assert not osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    resumed = _runner(work_dir, 'resumed', resume=True)
    resumed.train()
    for (name, ours), theirs in zip(resumed.model.state_dict().items(),
                                    whole.model.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)


def test_validation_leaves_the_rng_states_as_it_found_them(tmp_path):
    hook = ResumableCheckpointHook(interval=1)
    runner = _runner(str(tmp_path / 'exp'), 'rng')
    torch.manual_seed(1)
    hook.before_val(runner)
    torch.rand(3)  # what validation draws
    hook.after_val_epoch(runner, dict(mean=0.))
    after = torch.rand(3)
    torch.manual_seed(1)
    torch.testing.assert_close(after, torch.rand(3), rtol=0, atol=0)
