# Copyright (c) mmsecvit contributors. All rights reserved.
"""``conv_plus_identity`` is ``x + conv(x)`` in one convolution."""
import pytest
import torch
import torch.nn as nn

from mmsecvit.models.layers import conv_plus_identity


@pytest.mark.parametrize('kernel', [3, 5])
def test_equals_input_plus_convolution_with_the_same_gradients(kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, kernel, padding=kernel // 2, groups=6).double()
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64, requires_grad=True)
    fused = conv_plus_identity(conv, x)
    fused_grads = torch.autograd.grad(
        (fused**2).sum(), (x, conv.weight, conv.bias))
    plain = x + conv(x)
    plain_grads = torch.autograd.grad(
        (plain**2).sum(), (x, conv.weight, conv.bias))
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # The module's own weight is left as it was.
    assert conv.weight.grad is None


@pytest.mark.parametrize('conv', [
    nn.Conv2d(6, 6, 3, padding=1),  # not depth-wise
    nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),
    nn.Conv2d(6, 6, 3, padding=0, groups=6),  # changes the size
    nn.Conv2d(6, 6, 2, padding=1, groups=6),  # even kernel
])
def test_rejects_convolutions_without_an_identity_tap(conv):
    with pytest.raises(ValueError, match='depth-wise'):
        conv_plus_identity(conv, torch.rand(1, 6, 8, 8))
