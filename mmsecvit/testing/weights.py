# Copyright (c) mmsecvit contributors. All rights reserved.
"""Deterministic weights at the scale of a trained network, for tests.

The authors' initialisation (std 0.02 everywhere) makes every attention map
almost uniform, which hides bugs in the attention; tests that compare two
implementations use these weights instead. The value of each tensor depends
only on its name, shape and the seed, so two models with the same state-dict
keys (ours and the authors') get the same weights.
"""
import zlib

import torch
import torch.nn as nn


def _generator(name: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 +
                                         zlib.crc32(name.encode()))


def _random_like(name: str, tensor: torch.Tensor,
                 gen: torch.Generator) -> torch.Tensor:
    shape = tensor.shape

    def normal(std: float, mean: float = 0.) -> torch.Tensor:
        return mean + std * torch.randn(shape, generator=gen,
                                        dtype=torch.float64)

    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'running_var':
        return 0.5 + torch.rand(shape, generator=gen, dtype=torch.float64)
    if leaf == 'running_mean':
        return normal(0.1)
    if leaf.startswith('gamma'):  # layer scale
        return normal(0.1, mean=0.5)
    if tensor.dim() == 1 and leaf == 'weight':  # norm layers
        return normal(0.2, mean=1.)
    if leaf == 'bias':
        return normal(0.05)
    fan_in = tensor[0].numel() if tensor.dim() > 1 else shape[0]
    return normal(fan_in**-0.5)


@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every floating-point parameter and BatchNorm statistic of
    ``model`` with deterministic values at a trained network's scale.

    Fixed buffers (the RoPE frequencies ``angle``) and integer buffers are
    left as they are.

    Args:
        model (nn.Module): The model, changed in place.
        seed (int): Seed mixed with each tensor's name.

    Returns:
        nn.Module: ``model``.
    """
    for name, tensor in model.state_dict(keep_vars=True).items():
        if not tensor.is_floating_point() or name.endswith('angle'):
            continue
        tensor.data.copy_(_random_like(name, tensor, _generator(name, seed)))
    return model
