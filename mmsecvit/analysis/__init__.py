# Copyright (c) mmsecvit contributors. All rights reserved.
"""Measurements and checks of the backbones: latency, memory, FLOPs,
mixed-precision numerics and the GPU acceptance check.

Not imported by ``import mmsecvit``: the tools under ``tools/`` import what
they measure with.
"""
