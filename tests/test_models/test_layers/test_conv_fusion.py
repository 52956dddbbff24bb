# Copyright (c) mmsecvit contributors. All rights reserved.
"""The fused convolutions equal the modules they replace."""
import pytest
import torch
import torch.nn as nn

from mmsecvit.models.layers import conv_norm, conv_plus_identity


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


@pytest.mark.parametrize('affine', [True, False])
def test_eval_batch_norm_folds_into_the_convolution(affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    norm = nn.BatchNorm2d(5, affine=affine).double()
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    if affine:
        nn.init.uniform_(norm.weight, 0.5, 1.5)
        nn.init.uniform_(norm.bias, -1, 1)
    norm.eval()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    params = list(conv.parameters()) + list(norm.parameters())
    fused = conv_norm(conv, norm, x)
    fused_grads = torch.autograd.grad(fused.square().sum(), params)
    plain = norm(conv(x))
    plain_grads = torch.autograd.grad(plain.square().sum(), params)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_training_batch_norm_runs_as_it_is():
    conv, norm = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
    x = torch.randn(4, 3, 5, 5)
    out = conv_norm(conv, norm, x)
    # Batch statistics were used (and the running ones updated).
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(4),
                               rtol=0, atol=1e-5)
    assert int(norm.num_batches_tracked) == 1
