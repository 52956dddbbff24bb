# Copyright (c) mmsecvit contributors. All rights reserved.
from .hooks import ClusterVisHook, ResumableCheckpointHook
from .loops import ResumableEpochBasedTrainLoop
from .model_wrappers import DeviceAwareDistributedDataParallel
from .optim_wrappers import BF16AutocastOptimWrapper
from .optimizers import LayerDecayOptimWrapperConstructor
from .runtime import prepare_runtime, shutdown_distributed

__all__ = [
    'BF16AutocastOptimWrapper', 'ClusterVisHook',
    'DeviceAwareDistributedDataParallel',
    'LayerDecayOptimWrapperConstructor', 'ResumableCheckpointHook',
    'ResumableEpochBasedTrainLoop', 'prepare_runtime', 'shutdown_distributed'
]
