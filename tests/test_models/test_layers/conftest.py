# Copyright (c) mmsecvit contributors. All rights reserved.
"""Fixtures of the layer tests."""
from unittest import mock

import pytest
import torch

from mmsecvit.models.layers import cpu_fusion, onednn_fusion


@pytest.fixture
def onednn_off_contexts():
    """Contexts (name to factory) in which oneDNN's private CPU kernels
    must step aside although the input is a float32 CPU tensor without
    gradients."""
    return {
        'switched off': lambda: onednn_fusion(False),
        'autocast': lambda: torch.autocast('cpu', dtype=torch.bfloat16),
        'ONNX export': lambda: mock.patch.object(
            torch.onnx, 'is_in_onnx_export', return_value=True),
        'compiling': lambda: mock.patch.object(
            torch.compiler, 'is_compiling', return_value=True),
        'no oneDNN operators': lambda: mock.patch.object(
            cpu_fusion, '_OPS_AVAILABLE', False),
    }
