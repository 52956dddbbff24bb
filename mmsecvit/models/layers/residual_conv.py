# Copyright (c) mmsecvit contributors. All rights reserved.
"""A depth-wise convolution and its input summed in one convolution."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_plus_identity(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Compute ``x + conv(x)`` as a single convolution.

    For a depth-wise convolution of stride 1 whose padding keeps the size,
    adding the input equals adding 1 to the centre tap of every kernel. The
    sum then costs no extra pass over the map (nor an extra saved tensor in
    training), and ``conv``'s parameters and their gradients are the same as
    for ``x + conv(x)``; results differ from it by rounding only.

    Args:
        conv (nn.Conv2d): A depth-wise convolution (``groups`` equal to its
            input and output channels) with stride 1, an odd kernel and
            padding of half the kernel.
        x (Tensor): Input map (B, C, H, W).

    Returns:
        Tensor: ``x + conv(x)``.
    """
    kh, kw = conv.kernel_size
    if not (conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and kh % 2 == 1 and kw % 2 == 1
            and conv.padding == (kh // 2, kw // 2)):
        raise ValueError(f'conv_plus_identity needs a size-preserving '
                         f'depth-wise convolution, got {conv}.')
    weight = conv.weight.clone()
    weight[:, :, kh // 2, kw // 2] += 1
    return F.conv2d(x, weight, conv.bias, 1, conv.padding, 1, conv.groups)
