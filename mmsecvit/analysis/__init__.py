# Copyright (c) mmsecvit contributors. All rights reserved.
"""Measurements of the backbones: latency, memory and FLOPs.

Not imported by ``import mmsecvit``: the tools under
``tools/analysis_tools`` import what they measure with.
"""
