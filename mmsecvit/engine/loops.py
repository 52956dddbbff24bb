# Copyright (c) mmsecvit contributors. All rights reserved.
"""An epoch-based training loop that resumes in the middle of an epoch."""
import itertools

import torch
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from mmsecvit.registry import LOOPS

#: The message hub's runtime info (saved in every checkpoint) on the epoch
#: being trained: ``dict(epoch=index, iter=iteration it started at,
#: iters=its number of iterations)``.
EPOCH_START_KEY = 'train_epoch_start'


class _SkipFirstBatches:
    """Batch sampler yielding the batches of ``batch_sampler`` after the
    first ``num_skipped``; only indices are skipped, no data is loaded."""

    def __init__(self, batch_sampler, num_skipped: int):
        self.batch_sampler = batch_sampler
        self.num_skipped = num_skipped

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.num_skipped,
                                None)

    def __len__(self):
        return max(len(self.batch_sampler) - self.num_skipped, 0)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """:class:`~mmengine.runner.EpochBasedTrainLoop` that continues a resumed
    epoch where its checkpoint was taken.

    MMEngine's epoch loop restarts the whole epoch after resuming from a
    checkpoint saved mid-epoch (``CheckpointHook(by_epoch=False)``), so the
    samples before the checkpoint are trained on twice and the run no longer
    matches an uninterrupted one. This loop skips the batches of the resumed
    epoch that were already trained on, at the sampler level (indices only,
    no image is decoded), in the same order since the sampler's shuffle
    depends only on the seed and the epoch.

    A hook that sets ``stop_training`` during an iteration (e.g.
    :class:`~mmsecvit.engine.PreemptionHook`) stops the loop after that
    iteration, in the middle of the epoch, without the epoch's end hooks
    and validation; MMEngine's loop would finish the epoch first.

    Where the current epoch started, and how many iterations it has, is
    kept in the message hub, and so in every checkpoint. A run resumed with
    another number of iterations an epoch (another batch size or number of
    processes) cannot tell which samples of the resumed epoch were trained
    on: it warns and trains that epoch from its first batch, as MMEngine's
    loop does. Only the resumed epoch is shortened; every later one runs
    whole.

    It takes the arguments of :class:`~mmengine.runner.EpochBasedTrainLoop`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Built before the Runner resumes: a value left in this process's
        # message hub (an earlier runner of the same name) must not count
        # as the checkpoint's.
        self.runner.message_hub.update_info(EPOCH_START_KEY, None)
        # Batches of the first epoch that the resumed checkpoint had
        # trained on (set in run, once the Runner has resumed).
        self._num_resumed = 0

    def run(self) -> torch.nn.Module:
        """Launch training."""
        self.runner.call_hook('before_train')
        # Runner.train resumes before it runs the loop: the message hub
        # holds what the checkpoint was written with.
        self._num_resumed = self._batches_done(
            self.runner.message_hub.get_info(EPOCH_START_KEY))
        while self._epoch < self._max_epochs and not self.stop_training:
            if not self.run_epoch():
                break
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0
                         or self._epoch == self._max_epochs)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> bool:
        """Iterate the rest of the current epoch.

        Returns:
            bool: False when training was stopped before the epoch's end.
        """
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        num_done, self._num_resumed = self._num_resumed, 0
        if num_done > 0:
            batches = self._batches_after(num_done)
        else:
            batches = self.dataloader
            self.runner.message_hub.update_info(
                EPOCH_START_KEY,
                dict(
                    epoch=self._epoch,
                    iter=self._iter,
                    iters=len(self.dataloader)))
        for idx, data_batch in enumerate(batches, start=num_done):
            self.run_iter(idx, data_batch)
            if self.stop_training:
                return False
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        return True

    def _batches_done(self, epoch_start) -> int:
        """How many batches of the current epoch a resumed checkpoint had
        trained on.

        Args:
            epoch_start (dict, optional): The checkpoint's
                :data:`EPOCH_START_KEY`; None for a checkpoint without it
                (then every epoch is taken to have had this run's length).
        """
        length = len(self.dataloader)
        if epoch_start is None:
            epoch_start = dict(
                epoch=self._epoch, iter=self._epoch * length, iters=length)
        if epoch_start['epoch'] != self._epoch:
            return 0  # saved at the end of an epoch: the next one is new
        num_done = self._iter - epoch_start['iter']
        if num_done <= 0:
            return 0
        if num_done == epoch_start['iters']:
            return length  # saved after the epoch's last iteration
        if epoch_start['iters'] == length and num_done < length:
            return num_done
        self.runner.logger.warning(
            f'Resumed at iteration {self._iter}, {num_done} iterations into '
            f'epoch {self._epoch + 1}, from a run with '
            f'{epoch_start["iters"]} iterations an epoch; this run has '
            f'{length} (another batch size or number of processes). Which '
            'samples of that epoch were trained on is unknown: it starts '
            'again from its first batch.')
        return 0

    def _batches_after(self, num_done: int):
        """An iterator over the current epoch's batches after the first
        ``num_done``."""
        self.runner.logger.info(
            f'Resuming epoch {self._epoch + 1} after {num_done} of its '
            f'{len(self.dataloader)} iterations.')
        loader = self.dataloader
        options = dict(
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            generator=loader.generator)
        if loader.num_workers > 0:
            options['prefetch_factor'] = loader.prefetch_factor
        rest = DataLoader(
            loader.dataset,
            batch_sampler=_SkipFirstBatches(loader.batch_sampler, num_done),
            **options)
        # Starting an iterator draws a seed from the global torch RNG. The
        # uninterrupted run made that draw at the start of the epoch, before
        # the checkpoint, so the restored RNG state must not pay it twice.
        with torch.random.fork_rng(devices=[]):
            return iter(rest)


# Configs written before the mmsecvit scope existed (e.g. those the Runner
# dumped into work_dirs) name it without a scope; keep them working.
MMENGINE_LOOPS.register_module(module=ResumableEpochBasedTrainLoop)
