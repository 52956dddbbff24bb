# Copyright (c) mmsecvit contributors. All rights reserved.
from .checkpoint_hook import ResumableCheckpointHook
from .cluster_vis_hook import ClusterVisHook
from .preemption_hook import PreemptionHook

__all__ = ['ClusterVisHook', 'PreemptionHook', 'ResumableCheckpointHook']
