# Copyright (c) mmsecvit contributors. All rights reserved.
from .errors import (CheckpointMismatchError, ConfigError, ConfigKeyError,
                     ConfigTypeError, ConfigValueError, CorruptFileError,
                     MissingFileError, MMSecViTUserError, UnreadableImageError,
                     UnsupportedEnvironmentError, UnsupportedVersionError)
from .fileio import (ATOMIC_BACKEND_ARGS, AtomicLocalBackend,
                     CheckpointLoadError, atomic_write_bytes,
                     atomic_write_text, load_checkpoint_file,
                     register_checkpoint_safe_globals)
from .image import read_image

# Resuming or loading MMEngine checkpoints under torch's weights_only default
# needs these globals allow-listed before any checkpoint is read.
register_checkpoint_safe_globals()

__all__ = [
    'ATOMIC_BACKEND_ARGS', 'AtomicLocalBackend', 'CheckpointLoadError',
    'atomic_write_bytes', 'atomic_write_text', 'load_checkpoint_file',
    'register_checkpoint_safe_globals', 'MMSecViTUserError', 'ConfigError',
    'ConfigValueError', 'ConfigTypeError', 'ConfigKeyError',
    'MissingFileError', 'CorruptFileError', 'UnreadableImageError',
    'CheckpointMismatchError', 'UnsupportedEnvironmentError',
    'UnsupportedVersionError', 'read_image'
]
