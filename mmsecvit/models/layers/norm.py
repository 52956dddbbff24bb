# Copyright (c) mmsecvit contributors. All rights reserved.
import torch
import torch.nn as nn
import torch.nn.functional as F


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
        # so no copy back to NCHW is made.
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.norm.normalized_shape, self.norm.weight,
                         self.norm.bias, self.norm.eps)
        return x.permute(0, 3, 1, 2)
