# Copyright (c) mmsecvit contributors. All rights reserved.
from .checkpoint_hook import ResumableCheckpointHook
from .cluster_vis_hook import ClusterVisHook

__all__ = ['ClusterVisHook', 'ResumableCheckpointHook']
