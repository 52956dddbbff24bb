# Copyright (c) mmsecvit contributors. All rights reserved.
"""An epoch-based training loop that resumes in the middle of an epoch."""
import itertools

import torch
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from mmsecvit.registry import LOOPS


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

    It takes the arguments of :class:`~mmengine.runner.EpochBasedTrainLoop`.
    """

    def run(self) -> torch.nn.Module:
        """Launch training."""
        self.runner.call_hook('before_train')
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
        num_done = self._iter - self._epoch * len(self.dataloader)
        if num_done > 0:
            batches = self._batches_after(num_done)
        else:
            num_done, batches = 0, self.dataloader
        for idx, data_batch in enumerate(batches, start=num_done):
            self.run_iter(idx, data_batch)
            if self.stop_training:
                return False
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        return True

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
