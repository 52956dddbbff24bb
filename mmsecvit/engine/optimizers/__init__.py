# Copyright (c) mmsecvit contributors. All rights reserved.
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor']
