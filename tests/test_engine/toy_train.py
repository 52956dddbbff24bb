# Copyright (c) mmsecvit contributors. All rights reserved.
"""Train a toy model through the same path as ``tools/train.py``
(``prepare_runtime`` then ``Runner.from_cfg``), fast enough for tests.

Launch with ``python -m torch.distributed.run --nproc_per_node 2
toy_train.py WORK_DIR --launcher pytorch``. ``--die-at-iter N`` kills the
process group with SIGKILL in the middle of iteration N (after its forward
pass), like a node failure. ``--preemptible`` adds the PreemptionHook as
``tools/train.py`` does, ``--preempt-at N`` sends ``--preempt-signal`` to rank
``--preempt-rank`` at the start of iteration N, and ``--requeue-log FILE``
makes the requeue command write the job id to FILE instead of calling
``scontrol``. ``--unshared-rank R`` gives rank R a work dir of its own,
``WORK_DIR-rankR``, as on a node that does not see the shared one. At the
end every rank writes
``rank{r}.json`` with hashes of its parameters and buffers, the sample
indices it trained on and the final learning rate.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import signal
import sys

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmsecvit.engine import prepare_runtime, shutdown_distributed
from mmsecvit.engine.tool_config import enable_preemption


@MODELS.register_module(force=True)
class ToyNoisyRegressor(BaseModel):
    """A linear model with dropout and BN, so that resuming must restore RNG
    states, optimizer momentum and BN statistics to match."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(4)
        self.linear = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.5)
        self.seen = []

    def forward(self, inputs, index=None, target=None, mode='tensor'):
        x = self.dropout(self.norm(torch.stack(inputs)))
        out = self.linear(x).squeeze(-1)
        if mode == 'loss':
            self.seen += [int(i) for i in index]
            return dict(loss=((out - torch.stack(target))**2).mean())
        return out


@DATASETS.register_module(force=True)
class ToyRegressionDataset(Dataset):
    metainfo = dict(classes=('value', ))

    def __len__(self):
        return 24

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        inputs = torch.randn(4, generator=generator)
        # Random augmentation from the global RNG, as mmcv transforms do.
        inputs = inputs + 0.1 * torch.randn(4)
        return dict(inputs=inputs, index=index, target=inputs.sum())


@HOOKS.register_module(force=True)
class DieAtIterHook(Hook):
    """SIGKILL this process during iteration ``iteration`` (0-based)."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module(force=True)
class SignalAtIterHook(Hook):
    """Send ``signal_name`` to this process at the start of iteration
    ``iteration`` (0-based) on rank ``rank``, as a scheduler would."""

    def __init__(self, iteration, rank, signal_name):
        self.iteration = iteration
        self.rank = rank
        self.signal_name = signal_name

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.iteration and get_rank() == self.rank:
            os.kill(os.getpid(), signal.Signals[self.signal_name])


def digest(named_tensors):
    hasher = hashlib.sha256()
    for name, tensor in sorted(named_tensors):
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().numpy().tobytes())
    return hasher.hexdigest()


def custom_hooks(args):
    hooks = []
    if args.die_at is not None:
        hooks.append(dict(type='DieAtIterHook', iteration=args.die_at))
    if args.preempt_at is not None:
        hooks.append(
            dict(
                type='SignalAtIterHook',
                iteration=args.preempt_at,
                rank=args.preempt_rank,
                signal_name=args.preempt_signal))
    return hooks


def toy_config(work_dir, args):
    return Config(
        dict(
            work_dir=work_dir,
            model=dict(type='ToyNoisyRegressor'),
            train_dataloader=dict(
                dataset=dict(type='ToyRegressionDataset'),
                sampler=dict(type='DefaultSampler', shuffle=True),
                batch_size=2,
                num_workers=0),
            optim_wrapper=dict(
                type='AmpOptimWrapper' if args.amp else 'OptimWrapper',
                optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
            auto_scale_lr=dict(base_batch_size=2, enable=args.auto_scale_lr),
            param_scheduler=[
                dict(type='MultiStepLR', by_epoch=False, milestones=[5, 9])
            ],
            train_cfg=dict(
                type='EpochBasedTrainLoop', max_epochs=args.max_epochs),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook',
                    by_epoch=False,
                    interval=args.checkpoint_interval,
                    max_keep_ckpts=2),
                logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=custom_hooks(args),
            randomness=dict(seed=args.seed, deterministic=True),
            env_cfg=dict(dist_cfg=dict(backend='nccl')),
            resume=args.resume,
            launcher=args.launcher))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--launcher', default='none')
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--auto-scale-lr', action='store_true')
    parser.add_argument('--max-epochs', type=int, default=2)
    parser.add_argument('--checkpoint-interval', type=int, default=4)
    parser.add_argument(
        '--seed',
        type=lambda text: None if text == 'none' else int(text),
        default=0,
        help="the config's random seed; 'none' for none (MMEngine draws one)")
    parser.add_argument('--die-at', type=int, default=None)
    parser.add_argument('--preemptible', action='store_true')
    parser.add_argument('--preempt-at', type=int, default=None)
    parser.add_argument('--preempt-rank', type=int, default=0)
    parser.add_argument('--preempt-signal', default='SIGTERM')
    parser.add_argument('--requeue-log', default=None)
    parser.add_argument('--unshared-rank', type=int, default=None)
    args = parser.parse_args()
    # The rank before any process group exists, as torch.distributed.run
    # sets it.
    if args.unshared_rank == int(os.environ.get('RANK', 0)):
        args.work_dir = f'{args.work_dir}-rank{args.unshared_rank}'
    cfg = toy_config(args.work_dir, args)
    if args.preemptible:
        enable_preemption(cfg)
    if args.requeue_log:
        cfg.custom_hooks[-1]['requeue_command'] = [
            sys.executable, '-c',
            'import sys; open(sys.argv[1], "w").write(sys.argv[2])',
            args.requeue_log, '{job_id}'
        ]
    cfg = prepare_runtime(cfg, args.launcher)
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model.module if hasattr(runner.model,
                                           'module') else runner.model
    report = dict(
        # Parameters are synchronised by DDP; BN statistics are per rank
        # (broadcast_buffers=False, as MMEngine does).
        params=digest(model.named_parameters()),
        buffers=digest(model.named_buffers()),
        seen=model.seen,
        lr=runner.optim_wrapper.get_lr()['lr'][0],
        optim_wrapper=type(runner.optim_wrapper).__name__,
        wrapper=type(runner.model).__name__,
        backend=torch.distributed.get_backend()
        if torch.distributed.is_initialized() else None)
    with open(osp.join(args.work_dir, f'rank{get_rank()}.json'), 'w') as f:
        json.dump(report, f)
    # As tools/train.py ends.
    shutdown_distributed(barrier=True)


if __name__ == '__main__':
    main()
