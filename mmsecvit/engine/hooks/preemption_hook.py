# Copyright (c) mmsecvit contributors. All rights reserved.
"""Stop training cleanly when the scheduler announces the end of the job."""
import logging
import os
import signal
import subprocess
import threading
from typing import List, Optional, Sequence

import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from mmsecvit.registry import HOOKS
from ..loops import ResumableEpochBasedTrainLoop
from .checkpoint_hook import ResumableCheckpointHook

# What the ranks agree on after each iteration (the largest wins).
_GO_ON, _STOP, _STOP_AND_REQUEUE = 0, 1, 2


def _signal_number(name) -> signal.Signals:
    if isinstance(name, int):
        return signal.Signals(name)
    name = str(name).upper()
    try:
        return signal.Signals[name if name.startswith('SIG') else 'SIG' +
                              name]
    except KeyError:
        raise ValueError(
            f'Unknown signal {name!r}; give a name such as SIGTERM or '
            'SIGUSR1 (`kill -l` lists them).') from None


def slurm_job_id() -> Optional[str]:
    """The id ``scontrol requeue`` takes for this job, None outside Slurm
    (``<array job>_<task>`` for a job array's task)."""
    array_job = os.environ.get('SLURM_ARRAY_JOB_ID')
    array_task = os.environ.get('SLURM_ARRAY_TASK_ID')
    if array_job and array_task:
        return f'{array_job}_{array_task}'
    return os.environ.get('SLURM_JOB_ID')


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Checkpoint and stop when the job is about to be stopped; requeue it
    on Slurm.

    Schedulers send a signal some time before they kill a job: Slurm sends
    SIGTERM when it preempts a job or cancels it, and the signal chosen with
    ``sbatch --signal=USR1@120`` that many seconds before the time limit.
    On one of ``signals``, this hook lets the current iteration finish,
    then every rank stops after the same iteration (the ranks agree after
    each iteration with an ``all_reduce`` of one integer), a checkpoint of
    that iteration is written atomically by the
    :class:`ResumableCheckpointHook` and training ends normally. When the
    signal is one of ``requeue_signals`` and the process runs in a Slurm
    job, rank 0 requeues the job (``scontrol requeue <job id>``); the
    requeued job resumes from the checkpoint (``tools/train.py`` adds
    ``--resume`` in a restarted Slurm job).

    ``tools/train.py`` adds this hook; in a config of your own::

        custom_hooks = [dict(type='mmsecvit.PreemptionHook')]

    It needs ``default_hooks.checkpoint`` to be a
    :class:`ResumableCheckpointHook` and, for epoch-based training, the
    :class:`ResumableEpochBasedTrainLoop` (``prepare_runtime`` sets both).
    A signal that arrives during validation is acted upon at the next
    training iteration; one after the last iteration changes nothing.

    Args:
        signals (Sequence[str]): Signals that stop training. Defaults to
            ``('SIGTERM', 'SIGUSR1')``.
        requeue_signals (Sequence[str]): Those of ``signals`` after which
            the job is requeued on Slurm. SIGTERM is not among them by
            default: ``scancel`` sends it, and a preempted job is requeued
            by Slurm itself when the cluster's ``PreemptMode`` is REQUEUE.
            Defaults to ``('SIGUSR1', )``.
        requeue_command (Sequence[str]): The requeue command;
            ``{job_id}`` is replaced by the Slurm job id. Defaults to
            ``('scontrol', 'requeue', '{job_id}')``.
    """

    priority = 'LOWEST'  # after the checkpoint hook's own save

    def __init__(self,
                 signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'),
                 requeue_signals: Sequence[str] = ('SIGUSR1', ),
                 requeue_command: Sequence[str] = ('scontrol', 'requeue',
                                                   '{job_id}')) -> None:
        if isinstance(signals, str) or isinstance(requeue_signals, str):
            raise TypeError('signals and requeue_signals are sequences of '
                            "signal names, e.g. ['SIGTERM']")
        self.signals = [_signal_number(name) for name in signals]
        self.requeue_signals = [
            _signal_number(name) for name in requeue_signals
        ]
        unknown = set(self.requeue_signals) - set(self.signals)
        if unknown:
            raise ValueError(
                f'requeue_signals {sorted(s.name for s in unknown)} are not '
                f'in signals {[s.name for s in self.signals]}; add them.')
        self.requeue_command = list(requeue_command)
        self._received: List[signal.Signals] = []
        self._previous_handlers = {}
        self._checkpoint_hook: Optional[ResumableCheckpointHook] = None

    def before_train(self, runner) -> None:
        hooks = [
            hook for hook in runner.hooks
            if isinstance(hook, ResumableCheckpointHook)
        ]
        if not hooks:
            raise ValueError(
                'PreemptionHook saves through mmsecvit.'
                'ResumableCheckpointHook, which this runner does not have: '
                "set default_hooks.checkpoint.type='mmsecvit."
                "ResumableCheckpointHook' (tools/train.py does).")
        self._checkpoint_hook = hooks[0]
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop) and not isinstance(
                loop, ResumableEpochBasedTrainLoop):
            raise ValueError(
                f'PreemptionHook needs to stop in the middle of an epoch, '
                f'which {type(loop).__name__} cannot: use train_cfg.type='
                "'ResumableEpochBasedTrainLoop' (tools/train.py does).")
        if threading.current_thread() is not threading.main_thread():
            print_log(
                'PreemptionHook: not in the main thread, where signal '
                'handlers must be installed; preemption is not handled.',
                logger='current',
                level=logging.WARNING)
            return
        self._received = []
        for number in self.signals:
            self._previous_handlers[number] = signal.signal(
                number, self._on_signal)

    def _on_signal(self, number, frame) -> None:
        # Runs between two bytecodes of the main thread: only take note.
        self._received.append(signal.Signals(number))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        decision = _GO_ON
        if self._received:
            decision = _STOP
        if set(self._received) & set(self.requeue_signals):
            decision = _STOP_AND_REQUEUE
        decision = self._agree(decision)
        if decision == _GO_ON:
            return
        path = self._checkpoint_hook.save_iteration_checkpoint(runner)
        cause = ', '.join(dict.fromkeys(
            number.name for number in self._received)) or 'another rank'
        runner.logger.warning(
            f'Stop requested ({cause}): training stops after iteration '
            f'{runner.iter + 1} with checkpoint {path}.')
        if decision == _STOP_AND_REQUEUE and is_main_process():
            self._requeue(runner)
        runner.train_loop.stop_training = True

    @staticmethod
    def _agree(decision: int) -> int:
        """The largest decision of all ranks."""
        flag = torch.tensor([decision], dtype=torch.int32)
        all_reduce(flag, op='max')
        return int(flag.item())

    def _requeue(self, runner) -> None:
        job_id = slurm_job_id()
        if job_id is None:
            runner.logger.info('Not in a Slurm job: nothing to requeue.')
            return
        command = [
            part.format(job_id=job_id) for part in self.requeue_command
        ]
        try:
            result = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True)
            failure = (f'exited with {result.returncode}: '
                       f'{result.stdout.strip()}'
                       if result.returncode else None)
        except OSError as error:
            failure = str(error)
        if failure is None:
            runner.logger.warning(
                f'Requeued Slurm job {job_id} ({" ".join(command)}).')
        else:
            runner.logger.error(
                f'Could not requeue Slurm job {job_id}: `{" ".join(command)}`'
                f' {failure}. Submit the job with `sbatch --requeue`, or '
                'resume it by hand with --resume.')

    def after_train(self, runner) -> None:
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        self._previous_handlers.clear()
