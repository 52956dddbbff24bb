# Copyright (c) mmsecvit contributors. All rights reserved.
"""Checkpoints that survive crashes and resume training exactly."""
import logging
import os
import os.path as osp
import random
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.dist import (all_gather_object, get_dist_info, get_world_size,
                           is_main_process)
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmsecvit.registry import HOOKS
from mmsecvit.utils.errors import UnsupportedEnvironmentError
from mmsecvit.utils.fileio import (ATOMIC_BACKEND_ARGS, atomic_write_text,
                                   remove_stale_temp_files)

RNG_STATES_KEY = 'rng_states'


def get_rng_states() -> dict:
    """Python, numpy, torch (and CUDA) RNG states of this process."""
    states = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def _is_local_path(path: Optional[Union[str, os.PathLike]]) -> bool:
    """Whether ``path`` is a local path rather than a URI (``scheme://``).

    None counts as local: it stands for the work directory, which MMEngine's
    Runner always creates on the local file system.
    """
    return path is None or '://' not in os.fspath(path)


def _rank_list(ranks: List[int]) -> str:
    """``rank 3`` or ``ranks 0-2, 5``."""
    spans = []
    for rank in ranks:
        if spans and rank == spans[-1][1] + 1:
            spans[-1][1] = rank
        else:
            spans.append([rank, rank])
    text = ', '.join(f'{first}' if first == last else f'{first}-{last}'
                     for first, last in spans)
    return f'rank{"s" if len(ranks) > 1 else ""} {text}'


def _describe_start(state: dict) -> str:
    """Where one rank starts training, from its :meth:`_start_state`."""
    where = f"iteration {state['iter']} (epoch {state['epoch']})"
    if state['resumed']:
        source = state['checkpoint'] or (
            f"the latest checkpoint in {state['work_dir']}")
        return f'{where}, resumed from {source}'
    if state['checkpoint']:
        return f"{where}, weights loaded from {state['checkpoint']}"
    return (f"{where}, nothing resumed (no checkpoint found in "
            f"{state['work_dir']}): training from scratch")


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def set_rng_states(states: dict) -> None:
    """Inverse of :func:`get_rng_states`.

    The states are restored from CPU byte tensors whatever device the
    checkpoint was loaded to: MMEngine's ``Runner.resume`` maps a checkpoint
    onto the GPU, and the torch generators refuse CUDA tensors. CUDA states
    are restored per device, for the devices visible now; a warning says
    which could not be restored.
    """
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'].cpu())
    cuda_states = states.get('cuda')
    if not cuda_states:
        return
    if not torch.cuda.is_available():
        _warn(f'The checkpoint holds the CUDA RNG states of '
              f'{len(cuda_states)} devices but CUDA is not available; they '
              'are not restored.')
        return
    num_visible = torch.cuda.device_count()
    for index, state in enumerate(cuda_states[:num_visible]):
        torch.cuda.set_rng_state(state.cpu(), index)
    if len(cuda_states) != num_visible:
        _warn(f'The checkpoint holds the CUDA RNG states of '
              f'{len(cuda_states)} devices and {num_visible} are visible; '
              f'restored those of devices 0..'
              f'{min(len(cuda_states), num_visible) - 1} only, random '
              'operations on the GPU will differ from an uninterrupted run.')


@HOOKS.register_module()
class ResumableCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` whose checkpoints survive a
    crash and resume training exactly.

    Differences with the parent, all in service of ``--resume``:

    - Checkpoints saved to a local directory are written atomically
      (temporary file, ``fsync``, ``os.replace``) through the
      ``atomic_local`` file backend, unless ``backend_args`` chooses another
      backend.
    - The ``last_checkpoint`` pointer is written atomically too, and only
      after the checkpoint it names is complete.
    - Outdated checkpoints (``max_keep_ckpts``) are deleted after the new one
      is saved, not before, so a crash in between never leaves no checkpoint.
    - The RNG states (python, numpy, torch, CUDA) of every rank are stored in
      ``meta['rng_states']`` and restored on resume when the world size is
      unchanged, so dropout, drop-path and random proposal sampling continue
      as in an uninterrupted run.
    - Validation leaves the RNG states as it found them (saved in
      ``before_val``, restored in ``after_val_epoch``, before a best
      checkpoint is saved). It draws from them (the
      validation data loader's seed, random transforms), and a run resumed
      from a checkpoint taken before a validation does not validate that
      epoch again: without this, every resumed run would continue from
      other RNG states than the uninterrupted one.
    - In a distributed run, every rank checks in ``before_train`` (after
      MMEngine's ``load_or_resume``) that all ranks start at the same
      iteration and epoch and that all or none of them resumed, and raises
      :class:`~mmsecvit.utils.errors.UnsupportedEnvironmentError` otherwise.
      Each rank picks the checkpoint to resume from in its own view of the
      work directory: a node that cannot see the checkpoints would train
      from scratch while the others resume, and DDP would go on with
      diverging weights until it hangs.

    Checkpoints saved to a URI (``out_dir='s3://bucket/exp'``,
    ``petrel://``...) are not written atomically: the backend is the one
    MMEngine chooses by the prefix of the URI, or the one ``backend_args``
    names. (A ``backend`` in ``backend_args`` wins over the prefix in
    MMEngine, so the ``atomic_local`` backend would write them to a local
    directory named ``s3:/bucket/exp``.)

    Args:
        backend_args (dict, optional): File backend for the checkpoints.
            Defaults to None: ``dict(backend='atomic_local')`` when the
            checkpoints go to a local directory (``out_dir``, or the work
            directory when ``out_dir`` is None), the backend of the URI's
            prefix otherwise.
        **kwargs: Arguments of :class:`~mmengine.hooks.CheckpointHook`.
    """

    def __init__(self, *args, backend_args=None, file_client_args=None,
                 **kwargs):
        super().__init__(
            *args,
            backend_args=backend_args,
            file_client_args=file_client_args,
            **kwargs)
        self._user_backend_args = backend_args
        self._user_chose_backend = (backend_args is not None
                                    or file_client_args is not None)
        # Settled in before_train, where out_dir defaults to the work
        # directory.
        self.backend_args = self._backend_args_for(self.out_dir)
        # Set by after_load_checkpoint: whether this rank loaded a checkpoint
        # before training, and whether it resumed from it.
        self._loaded_checkpoint = False
        self._resumed = False
        self._rng_states_before_val = None

    def before_train(self, runner) -> None:
        """Check that every rank starts where the others do, choose the file
        backend for where the checkpoints go, then set up as
        :class:`~mmengine.hooks.CheckpointHook` does.

        Raises:
            UnsupportedEnvironmentError: If the ranks of a distributed run
                did not resume from the same point.
        """
        self._check_ranks_start_alike(runner)
        destination = (runner.work_dir
                       if self.out_dir is None else self.out_dir)
        self.backend_args = self._backend_args_for(destination)
        super().before_train(runner)
        if self.backend_args == ATOMIC_BACKEND_ARGS and is_main_process():
            # The checkpoints, and last_checkpoint in the work directory.
            for directory in dict.fromkeys((self.out_dir, runner.work_dir)):
                self._remove_stale_temp_files(directory)

    @staticmethod
    def _remove_stale_temp_files(directory: str) -> None:
        """Remove what writes killed in an earlier run left behind (as
        large as a checkpoint each, and hidden); only rank 0 writes here,
        and it has not started to."""
        removed = remove_stale_temp_files(directory)
        if removed:
            listed = ', '.join(f'{name} ({size / 2**20:.1f} MiB)'
                               for name, size in removed)
            _warn(f'Removed the temporary files of {len(removed)} '
                  f'interrupted writes from {directory}: {listed}.')

    def _start_state(self, runner) -> dict:
        """Where this rank starts training, to compare across ranks."""
        return dict(
            iter=runner.iter,
            epoch=runner.epoch,
            resumed=self._resumed,
            checkpoint=(runner.cfg.get('load_from')
                        if self._loaded_checkpoint else None),
            work_dir=runner.work_dir)

    def _check_ranks_start_alike(self, runner) -> None:
        """Raise on every rank unless all ranks start at the same iteration
        and epoch, and either all or none of them resumed.

        Every rank of a distributed run gathers, whatever it loaded: a rank
        that found no checkpoint may even have ``resume`` off (it then starts
        from ``load_from_if_no_checkpoint``), and skipping the collective
        there would hang the others. Single-process runs do nothing.
        """
        if get_world_size() <= 1:
            return
        states = all_gather_object(self._start_state(runner))
        if len({(state['iter'], state['epoch'], state['resumed'])
                for state in states}) <= 1:
            return
        groups = {}
        for rank, state in enumerate(states):
            key = tuple(sorted(state.items()))
            groups.setdefault(key, []).append(rank)
        starts = '; '.join(
            f'{_rank_list(ranks)}: {_describe_start(dict(key))}'
            for key, ranks in groups.items())
        raise UnsupportedEnvironmentError(
            f'The {len(states)} ranks of this distributed run did not '
            f'resume from the same point ({starts}). Each rank looks for the '
            'checkpoint to resume from in its own view of work_dir, so a '
            'node that does not see the checkpoints (a work_dir that is not '
            'on a shared file system, a stale NFS cache) trains from '
            'scratch while the others resume, and DDP would go on with '
            'diverging weights and counters. Every rank must see the same '
            'work_dir: put it on a shared file system, or pass --resume PATH '
            'to a checkpoint all nodes can read.')

    def _backend_args_for(self, destination) -> Optional[dict]:
        """``backend_args`` for checkpoints saved under ``destination``
        (None: the work directory, which is local)."""
        if self._user_chose_backend or not _is_local_path(destination):
            return self._user_backend_args
        return dict(ATOMIC_BACKEND_ARGS)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # Every rank gets here; the gather must happen before the
        # main-process-only save.
        meta = dict(meta or {})
        meta[RNG_STATES_KEY] = all_gather_object(get_rng_states())

        outdated_step = self._track_kept_step(runner, step)
        self._save(runner, self.filename_tmpl.format(step), meta,
                   self.by_epoch)
        if is_main_process() and outdated_step is not None:
            self._remove_checkpoint(outdated_step)

    def save_iteration_checkpoint(self, runner) -> str:
        """Save a checkpoint of the training iteration that just ended,
        whatever the interval, e.g. before the job is stopped.

        It is named ``iter_{N}.pth`` like the checkpoints of
        ``by_epoch=False``, so that resuming continues in the middle of the
        epoch, and it is not counted in ``max_keep_ckpts``. Call it on every
        rank, from ``after_train_iter``.

        Args:
            runner (Runner): The runner.

        Returns:
            str: Path of the checkpoint; nothing is written when the
            interval saved this iteration already.
        """
        filename = f'iter_{runner.iter + 1}.pth'
        path = self.file_backend.join_path(self.out_dir, filename)
        if self.last_ckpt != path:
            meta = {RNG_STATES_KEY: all_gather_object(get_rng_states())}
            self._save(runner, filename, meta, by_epoch=False)
        return path

    def _save(self, runner, filename: str, meta: dict,
              by_epoch: bool) -> None:
        """Save atomically, then point ``last_checkpoint`` at the file."""
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if is_main_process():
            atomic_write_text(self.last_ckpt,
                              osp.join(runner.work_dir, 'last_checkpoint'))

    def _track_kept_step(self, runner, step):
        """Record ``step`` among the kept checkpoints; return the step whose
        checkpoint falls out of ``max_keep_ckpts``, if any."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
            return None
        outdated_step = None
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            outdated_step = self.keep_ckpt_ids.popleft()
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
        return outdated_step

    def _remove_checkpoint(self, step):
        path = self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # e.g. saved by DeepSpeed
            self.file_backend.rmtree(path)

    def before_val(self, runner) -> None:
        """Keep the RNG states that validation will draw from."""
        super().before_val(runner)
        self._rng_states_before_val = get_rng_states()

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Restore the RNG states of before validation, then save the best
        checkpoint (``save_best``) as :class:`~mmengine.hooks.CheckpointHook`
        does, with those states."""
        if self._rng_states_before_val is not None:
            set_rng_states(self._rng_states_before_val)
            self._rng_states_before_val = None
        super().after_val_epoch(runner, metrics)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record that this rank loaded a checkpoint (for the check in
        :meth:`before_train`) and restore its RNG states when resuming."""
        self._loaded_checkpoint = True
        # The config's resume (tools/train.py builds the Runner from it), or
        # the Runner's argument where it was built in Python without one.
        self._resumed = bool(
            runner.cfg.get('resume', False)
            or getattr(runner, '_resume', False))
        if not self._resumed:
            return
        states = checkpoint.get('meta', {}).get(RNG_STATES_KEY)
        rank, world_size = get_dist_info()
        if states is None:
            _warn('The checkpoint holds no RNG states; random operations '
                  'after resuming will differ from an uninterrupted run.')
        elif len(states) != world_size:
            _warn(f'The checkpoint holds RNG states of {len(states)} '
                  f'processes but {world_size} are running; RNG states are '
                  'not restored.')
        else:
            set_rng_states(states[rank])
