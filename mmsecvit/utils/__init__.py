# Copyright (c) mmsecvit contributors. All rights reserved.
from .checkpoint import (ATOMIC_BACKEND_ARGS, AtomicLocalBackend,
                         CheckpointLoadError, atomic_write_bytes,
                         atomic_write_text, load_checkpoint_file,
                         register_checkpoint_safe_globals)
from .data_check import DatasetNotFoundError, check_dataset_paths
from .pretrained_check import PretrainedNotFoundError, check_pretrained_paths

# Resuming or loading MMEngine checkpoints under torch's weights_only default
# needs these globals allow-listed before any checkpoint is read.
register_checkpoint_safe_globals()

__all__ = [
    'ATOMIC_BACKEND_ARGS', 'AtomicLocalBackend', 'CheckpointLoadError',
    'atomic_write_bytes', 'atomic_write_text',
    'load_checkpoint_file', 'register_checkpoint_safe_globals',
    'DatasetNotFoundError', 'check_dataset_paths', 'PretrainedNotFoundError',
    'check_pretrained_paths'
]
