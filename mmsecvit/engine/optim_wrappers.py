# Copyright (c) mmsecvit contributors. All rights reserved.
"""Mixed precision in bfloat16 where MMEngine's AmpOptimWrapper cannot go.

MMEngine 0.10.7's ``AmpOptimWrapper`` asserts that CUDA (or NPU/MLU) is
available, so ``--amp`` fails on a CPU. bfloat16 has float32's exponent range,
so it needs no loss scaling: autocasting the forward pass is all it takes.
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS

from mmsecvit.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class BF16AutocastOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` that runs the forward pass under
    ``torch.autocast(dtype=torch.bfloat16)`` on the model's device (CPU or
    CUDA); gradients and optimizer states stay in float32.

    It takes the arguments of :class:`OptimWrapper`.
    :func:`mmsecvit.engine.prepare_runtime` selects it for ``--amp`` runs on
    machines without CUDA.
    """

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        device_type = 'cuda' if any(p.is_cuda
                                    for p in model.parameters()) else 'cpu'
        with super().optim_context(model), torch.autocast(
                device_type=device_type, dtype=torch.bfloat16):
            yield


# Configs written before the mmsecvit scope existed (e.g. those the Runner
# dumped into work_dirs) name it without a scope; keep them working.
MMENGINE_OPTIM_WRAPPERS.register_module(module=BF16AutocastOptimWrapper)
