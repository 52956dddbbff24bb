# Copyright (c) mmsecvit contributors. All rights reserved.
from .weights import randomize_weights

__all__ = ['randomize_weights']
