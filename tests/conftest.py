# Copyright (c) mmsecvit contributors. All rights reserved.
from unittest import mock

import pytest
import torch


@pytest.fixture
def fresh_dynamo():
    """Empty TorchDynamo's caches before and after the test.

    Compiled code stays attached to a function's code object for the whole
    process, so graphs that earlier tests built for, say,
    ``SecViTBlock.forward`` would count against a later test's recompile
    limit (8 by default) and change its graph counts.
    """
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def onednn_off_contexts():
    """Contexts (name to factory) in which oneDNN's private CPU kernels
    must step aside although the input is a float32 CPU tensor without
    gradients (tests of the fused kernels and the prepacked weights)."""
    from mmsecvit.models.layers import cpu_fusion, onednn_fusion
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
