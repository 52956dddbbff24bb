# Copyright (c) mmsecvit contributors. All rights reserved.
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import SyncBatchNorm as MMSyncBatchNorm
from torch.nn.modules.batchnorm import _BatchNorm

from .cpu_fusion import has_module_hooks

#: The BatchNorm classes: torch's (BN, SyncBN) and mmcv's SyncBatchNorm
#: (``MMSyncBN``, also what ``sync_bn='mmcv'`` converts to), which is not a
#: subclass of ``_BatchNorm``.
BATCH_NORMS = (_BatchNorm, MMSyncBatchNorm)


def batch_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for any norm layer, safe for mmcv's SyncBatchNorm on a
    channels-last map.

    mmcv's SyncBatchNorm kernels read their input and output gradient as
    contiguous NCHW memory whatever the strides; on a channels-last map
    they would compute the statistics, the output and the gradient of
    scrambled channels. So it gets the map in NCHW order, its output
    gradient is made contiguous too, and its output goes back to the
    memory format of ``x`` (two copies per layer; torch's BatchNorm and
    SyncBatchNorm handle channels-last themselves and take none).

    Args:
        norm (nn.Module): The norm layer.
        x (Tensor): Input map (B, C, H, W).

    Returns:
        Tensor: ``norm(x)``, in the memory format of ``x``.
    """
    if not isinstance(norm, MMSyncBatchNorm):
        return norm(x)
    memory_format = torch.channels_last if x.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format
    out = norm(x.contiguous())
    if out.requires_grad:
        out.register_hook(torch.Tensor.contiguous)
    return out.contiguous(memory_format=memory_format)


def layer_norm_over_channels(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over dim 1 of ``x`` without permuting it, the path
    :class:`LayerNorm2d` takes while torch.compile captures a graph.

    The eager path permutes the map to channels-last order, normalises the
    last dim and permutes back, so its output is a view, which the next
    convolution saves for its backward pass. Inductor with dynamic shapes
    (torch 2.13) fails to compile a training graph that saves such a view
    (see :mod:`~mmsecvit.models.layers.compile_workarounds`). Here the
    output is a new tensor, with no extra copy: Inductor fuses the
    statistics and the normalisation.

    Args:
        x (Tensor): Map (B, C, H, W).
        weight, bias (Tensor): Affine parameters (C,).
        eps (float): Added to the variance.

    Returns:
        Tensor: The normalised map, in the memory format of ``x``.
    """
    var, mean = torch.var_mean(x, dim=1, correction=0, keepdim=True)
    x = (x - mean) * torch.rsqrt(var + eps)
    return x * weight[:, None, None] + bias[:, None, None]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map.

    The affine parameters live in a child ``norm`` so that the parameter
    names (``norm1.norm.weight``) match the authors' checkpoints.

    Args:
        num_channels (int): Channels of the map.
        eps (float): Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # For a channels-last map both permutes are free, and the result is
        # channels-last again: the next convolutions run fastest that way,
        # so no copy back to NCHW is made. A hooked ``norm`` is called as a
        # module (see has_module_hooks), compiled or not.
        if has_module_hooks(self.norm):
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if torch.compiler.is_compiling():
            return layer_norm_over_channels(x, self.norm.weight,
                                            self.norm.bias, self.norm.eps)
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.norm.normalized_shape,
            self.norm.weight, self.norm.bias, self.norm.eps)
        return x.permute(0, 3, 1, 2)
