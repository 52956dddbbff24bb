# Copyright (c) mmsecvit contributors. All rights reserved.
from .optimizers import LayerDecayOptimWrapperConstructor
from .runtime import prepare_runtime

__all__ = ['LayerDecayOptimWrapperConstructor', 'prepare_runtime']
