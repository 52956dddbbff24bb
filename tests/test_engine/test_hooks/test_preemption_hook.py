# Copyright (c) mmsecvit contributors. All rights reserved.
"""PreemptionHook's arguments, checks and Slurm helpers. Stopping and
resuming two gloo ranks is tested in test_distributed_resume.py."""
import signal
import sys
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mmsecvit.engine import PreemptionHook, ResumableCheckpointHook
from mmsecvit.engine.hooks.preemption_hook import slurm_job_id
from mmsecvit.engine.tool_config import enable_preemption, resume_after_requeue


def test_signals_are_given_by_name():
    hook = PreemptionHook(signals=['TERM', 'SIGUSR1'], requeue_signals=[])
    assert hook.signals == [signal.SIGTERM, signal.SIGUSR1]


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(signals=['SIGNOPE']), ValueError, 'Unknown signal'),
    (dict(signals='SIGTERM'), TypeError, 'sequences of signal names'),
    (dict(signals=['SIGTERM'], requeue_signals=['SIGUSR1']), ValueError,
     r"requeue_signals \['SIGUSR1'\] are not in signals"),
])
def test_bad_arguments_are_refused_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        PreemptionHook(**kwargs)


def _runner(loop, hooks):
    return SimpleNamespace(train_loop=loop, hooks=hooks)


def test_needs_the_resumable_checkpoint_hook():
    loop = object.__new__(IterBasedTrainLoop)
    with pytest.raises(ValueError, match='ResumableCheckpointHook'):
        PreemptionHook().before_train(_runner(loop, []))


def test_refuses_an_epoch_loop_that_cannot_stop_mid_epoch():
    loop = object.__new__(EpochBasedTrainLoop)
    hooks = [object.__new__(ResumableCheckpointHook)]
    with pytest.raises(ValueError, match='ResumableEpochBasedTrainLoop'):
        PreemptionHook().before_train(_runner(loop, hooks))


def test_installs_its_handlers_for_training_only():
    loop = object.__new__(IterBasedTrainLoop)
    runner = _runner(loop, [object.__new__(ResumableCheckpointHook)])
    hook = PreemptionHook(signals=['SIGUSR2'], requeue_signals=[])
    before = signal.getsignal(signal.SIGUSR2)
    hook.before_train(runner)
    try:
        signal.raise_signal(signal.SIGUSR2)  # would end the process
        assert hook._received == [signal.SIGUSR2]
    finally:
        hook.after_train(runner)
    assert signal.getsignal(signal.SIGUSR2) == before


@pytest.mark.parametrize('env, expected', [
    (dict(), None),
    (dict(SLURM_JOB_ID='17'), '17'),
    (dict(SLURM_JOB_ID='18', SLURM_ARRAY_JOB_ID='17',
          SLURM_ARRAY_TASK_ID='1'), '17_1'),
])
def test_slurm_job_id(monkeypatch, env, expected):
    for name in ('SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert slurm_job_id() == expected


@pytest.mark.parametrize('restarts, given, expected', [
    (None, None, None),
    ('0', None, None),
    ('2', None, 'auto'),
    ('2', 'epoch_3.pth', 'epoch_3.pth'),
])
def test_a_requeued_slurm_job_resumes(monkeypatch, restarts, given, expected):
    monkeypatch.delenv('SLURM_RESTART_COUNT', raising=False)
    if restarts is not None:
        monkeypatch.setenv('SLURM_RESTART_COUNT', restarts)
    assert resume_after_requeue(given) == expected


def test_enable_preemption_adds_the_hook_once():
    cfg = Config(
        dict(
            default_hooks=dict(checkpoint=dict(type='CheckpointHook')),
            custom_hooks=[dict(type='EMAHook')]))
    enable_preemption(cfg)
    enable_preemption(cfg)
    assert [hook['type'] for hook in cfg.custom_hooks
            ] == ['EMAHook', 'mmsecvit.PreemptionHook']


def test_enable_preemption_leaves_other_checkpoint_hooks_alone():
    cfg = Config(
        dict(default_hooks=dict(checkpoint=dict(type='MyCheckpointHook'))))
    enable_preemption(cfg)
    assert not cfg.get('custom_hooks')


class _Saver:

    def __init__(self):
        self.saved = []

    def save_iteration_checkpoint(self, runner):
        self.saved.append(runner.iter + 1)
        return f'iter_{runner.iter + 1}.pth'


def _stopping_runner():
    return SimpleNamespace(
        iter=4,
        logger=MMLogger.get_current_instance(),
        train_loop=SimpleNamespace(stop_training=False))


@pytest.mark.parametrize('received, requeued', [
    ([], None),
    ([signal.SIGTERM], None),
    ([signal.SIGUSR1], '77'),
    ([signal.SIGUSR1, signal.SIGTERM], '77'),  # time limit, then the kill
])
def test_after_the_iteration_checkpoints_stops_and_requeues(
        monkeypatch, tmp_path, received, requeued):
    monkeypatch.setenv('SLURM_JOB_ID', '77')
    log = tmp_path / 'requeued'
    hook = PreemptionHook(requeue_command=[
        sys.executable, '-c',
        'import sys; open(sys.argv[1], "w").write(sys.argv[2])',
        str(log), '{job_id}'
    ])
    hook._checkpoint_hook = _Saver()
    hook._received = list(received)
    runner = _stopping_runner()
    hook.after_train_iter(runner, batch_idx=4)
    assert runner.train_loop.stop_training == bool(received)
    assert hook._checkpoint_hook.saved == ([5] if received else [])
    assert (log.read_text() if log.exists() else None) == requeued
