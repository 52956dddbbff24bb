# Copyright (c) mmsecvit contributors. All rights reserved.
from .checkpoint_hook import ResumableCheckpointHook
from .cluster_vis_hook import ClusterVisHook
from .compile_hook import PlainParamGroupsHook
from .preemption_hook import PreemptionHook

__all__ = [
    'ClusterVisHook', 'PlainParamGroupsHook', 'PreemptionHook',
    'ResumableCheckpointHook'
]
