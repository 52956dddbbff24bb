# Copyright (c) mmsecvit contributors. All rights reserved.
from .runtime import prepare_runtime

__all__ = ['prepare_runtime']
