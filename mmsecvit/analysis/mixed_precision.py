# Copyright (c) mmsecvit contributors. All rights reserved.
"""How SecViT behaves under autocast, measured against float32.

Two figures decide whether a low-precision dtype is safe to train with:

* cluster agreement: the share of tokens that a block puts into the same
  cluster under autocast as in float32. Rounding moves tokens near a
  cluster boundary to the neighbouring cluster, which changes the output
  by far more than the rounding itself;
* the largest activation per stage, against the largest finite float16
  value (65504): beyond it float16 overflows to inf.
"""
import math
from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
import torch.nn as nn

from mmsecvit.models.layers import record_cluster_assignments

FP16_MAX = torch.finfo(torch.float16).max


def _stage_blocks(records: Dict[str, list], stage: int) -> List[str]:
    prefix = f'layers.{stage}.'
    return sorted((name for name in records if name.startswith(prefix)),
                  key=lambda name: int(name.split('.')[3]))


@torch.no_grad()
def cluster_agreement(model: nn.Module,
                      inputs: torch.Tensor,
                      dtype: torch.dtype,
                      stage: int = 0) -> List[float]:
    """Share of tokens in the same cluster under autocast as in float32.

    Args:
        model (nn.Module): A float32 SecViT in eval mode.
        inputs (Tensor): Images on the model's device.
        dtype (torch.dtype): The autocast dtype (bf16 or fp16).
        stage (int): The stage whose blocks are compared.

    Returns:
        list[float]: One agreement in [0, 1] per block of ``stage``.
    """
    with record_cluster_assignments(model) as reference:
        model(inputs)
    with record_cluster_assignments(model) as mixed, \
            torch.autocast(inputs.device.type, dtype=dtype):
        model(inputs)
    return [(reference[name][0] == mixed[name][0]).double().mean().item()
            for name in _stage_blocks(reference, stage)]


@contextmanager
def _record_peaks(model: nn.Module, peaks: Dict[str, float]) -> Iterator[None]:
    """Record in ``peaks`` the largest absolute module output of the stem
    (``'stem'``) and of each stage (``'stage{i}'``)."""

    def hook_for(key):

        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and \
                    output.is_floating_point():
                peak = output.detach().abs().amax().float().item()
                previous = peaks.get(key, 0.)
                # nan (an overflow turned into nan) must stick.
                if not math.isnan(previous) and not peak <= previous:
                    peaks[key] = peak

        return hook

    handles = []
    for name, module in model.named_modules():
        parts = name.split('.')
        if parts[0] == 'patch_embed':
            key = 'stem'
        elif parts[0] == 'layers' and len(parts) > 1:
            key = f'stage{parts[1]}'
        else:
            continue
        handles.append(module.register_forward_hook(hook_for(key)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def activation_peaks(model: nn.Module,
                     inputs: torch.Tensor,
                     dtype: torch.dtype = torch.float32) -> Dict[str, float]:
    """Largest absolute output of any module of the stem and each stage.

    Args:
        model (nn.Module): A SecViT.
        inputs (Tensor): Images on the model's device.
        dtype (torch.dtype): float32 runs the model as it is; another dtype
            runs it under autocast in that dtype.

    Returns:
        dict[str, float]: ``{'stem': ..., 'stage0': ..., ...}``; ``inf``
        or ``nan`` where the run overflowed.
    """
    peaks: Dict[str, float] = {}
    with _record_peaks(model, peaks), torch.autocast(
            inputs.device.type, dtype=dtype, enabled=dtype != torch.float32):
        model(inputs)
    return peaks
