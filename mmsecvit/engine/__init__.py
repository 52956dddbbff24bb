# Copyright (c) mmsecvit contributors. All rights reserved.
from .hooks import (ClusterVisHook, PlainParamGroupsHook, PreemptionHook,
                    ResumableCheckpointHook)
from .loops import ResumableEpochBasedTrainLoop
from .model_wrappers import DeviceAwareDistributedDataParallel
from .optim_wrappers import BF16AutocastOptimWrapper
from .optimizers import LayerDecayOptimWrapperConstructor
from .preflight import (DatasetNotFoundError, PretrainedNotFoundError,
                        check_dataset_paths, check_pretrained_paths)
from .runtime import abort_distributed, prepare_runtime, shutdown_distributed

__all__ = [
    'BF16AutocastOptimWrapper', 'ClusterVisHook', 'DatasetNotFoundError',
    'DeviceAwareDistributedDataParallel',
    'LayerDecayOptimWrapperConstructor', 'PlainParamGroupsHook',
    'PreemptionHook',
    'PretrainedNotFoundError', 'ResumableCheckpointHook',
    'ResumableEpochBasedTrainLoop', 'abort_distributed', 'check_dataset_paths',
    'check_pretrained_paths', 'prepare_runtime', 'shutdown_distributed'
]
