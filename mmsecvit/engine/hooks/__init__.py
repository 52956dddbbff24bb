# Copyright (c) mmsecvit contributors. All rights reserved.
from .checkpoint_hook import ResumableCheckpointHook

__all__ = ['ResumableCheckpointHook']
