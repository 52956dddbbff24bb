# Copyright (c) mmsecvit contributors. All rights reserved.
"""mmcv's SyncBatchNorm (``MMSyncBN``, ``sync_bn='mmcv'``) in the
channels-last backbone, simulated on CPU.

mmcv's SyncBatchNorm runs only on CUDA. Its kernels read the input and the
output gradient as contiguous NCHW memory, whatever the strides; the
function below does the same on CPU for one process, so a channels-last
map gives the wrong numbers here exactly where it would on a GPU.
"""
import copy

import mmcv.ops.sync_bn as mmcv_sync_bn
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.model import convert_sync_batchnorm

from mmsecvit.models import SecViT
from mmsecvit.testing.archs import TEST_ARCH


def read_as_nchw(tensor):
    """What a kernel that ignores strides reads: the memory of ``tensor``
    taken as a contiguous NCHW tensor of its shape."""
    strides = torch.empty(tensor.shape, device='meta').stride()
    return tensor.as_strided(tensor.shape, strides)


class StrideBlindSyncBatchNorm(torch.autograd.Function):
    """mmcv's ``SyncBatchNormFunction`` with one process, computed on CPU
    the way its kernels access memory."""

    @staticmethod
    def forward(ctx, input, running_mean, running_var, weight, bias,
                momentum, eps, group, group_size, stats_mode):
        with torch.enable_grad():
            x = read_as_nchw(input).detach().requires_grad_()
            w = weight.detach().requires_grad_()
            b = bias.detach().requires_grad_()
            out = F.batch_norm(x, running_mean, running_var, w, b, True,
                               momentum, eps)
        ctx.graph = (out, x, w, b)
        output = torch.zeros_like(input)  # as mmcv: keeps the strides
        read_as_nchw(output).copy_(out.detach())
        return output

    @staticmethod
    def backward(ctx, grad_output):
        out, x, w, b = ctx.graph
        grad_x, grad_w, grad_b = torch.autograd.grad(
            out, (x, w, b), read_as_nchw(grad_output))
        grad_input = torch.zeros_like(grad_output)
        read_as_nchw(grad_input).copy_(grad_x)
        return (grad_input, None, None, grad_w, grad_b) + (None, ) * 5


@pytest.fixture
def simulated_mmcv_sync_bn(monkeypatch):
    monkeypatch.setattr(mmcv_sync_bn, 'SyncBatchNormFunction',
                        StrideBlindSyncBatchNorm)
    # mmcv's SyncBatchNorm asks the world size when it is built.
    monkeypatch.setattr(dist, 'get_world_size', lambda group=None: 1)


def test_simulation_is_blind_to_channels_last(simulated_mmcv_sync_bn):
    # The premise of the tests below: a bare mmcv SyncBatchNorm is wrong
    # on a channels-last map.
    norm = mmcv_sync_bn.SyncBatchNorm(8)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    norm.double()
    expected = norm(x)
    assert not torch.allclose(
        norm(x.contiguous(memory_format=torch.channels_last)), expected)


def backbone_pair(how='norm_cfg'):
    """A BN SecViT and an MMSyncBN SecViT with the same weights, in float64
    (mmcv's kernels take float32 or float16; the simulation any dtype, and
    float64 leaves no doubt about rounding).

    ``how``: 'norm_cfg' builds it with ``norm_cfg=dict(type='MMSyncBN')``,
    'sync_bn' converts a BN model as MMEngine's Runner does for
    ``sync_bn='mmcv'``.
    """
    bn = SecViT(TEST_ARCH).double()
    if how == 'norm_cfg':
        sync = SecViT(TEST_ARCH, norm_cfg=dict(type='MMSyncBN')).double()
        sync.load_state_dict(bn.state_dict())
    else:
        sync = convert_sync_batchnorm(
            copy.deepcopy(bn), implementation='mmcv').double()
    return bn, sync


def outputs_and_grads(model, x):
    outs = model(x)
    loss = sum((out * torch.randn_like(out).abs()).sum() for out in outs)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return outs, grads


@pytest.mark.parametrize('how', ['norm_cfg', 'sync_bn'])
def test_mmsync_bn_trains_like_bn_on_channels_last_maps(
        how, simulated_mmcv_sync_bn):
    bn, sync = backbone_pair(how)
    assert isinstance(sync.patch_embed.proj[1], mmcv_sync_bn.SyncBatchNorm)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    torch.manual_seed(0)
    expected_outs, expected_grads = outputs_and_grads(bn.train(), x)
    torch.manual_seed(0)
    outs, grads = outputs_and_grads(sync.train(), x)
    for out, expected in zip(outs, expected_outs):
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    for name, expected in expected_grads.items():
        torch.testing.assert_close(
            grads[name], expected, rtol=1e-9, atol=1e-9, msg=name)
    for name, expected in bn.state_dict().items():
        if 'running' in name:
            torch.testing.assert_close(sync.state_dict()[name], expected)


def test_norm_eval_keeps_mmsync_bn_in_eval_mode(simulated_mmcv_sync_bn):
    model = SecViT(
        TEST_ARCH, norm_cfg=dict(type='MMSyncBN'), norm_eval=True).train()
    norms = [
        m for m in model.modules()
        if isinstance(m, mmcv_sync_bn.SyncBatchNorm)
    ]
    assert len(norms) == 4 + 3  # stem and downsamples
    assert not any(norm.training for norm in norms)


def test_eval_mode_mmsync_bn_is_folded_like_bn(simulated_mmcv_sync_bn):
    bn, sync = backbone_pair()
    x = torch.randn(1, 3, 48, 40, dtype=torch.float64)
    for out, expected in zip(sync.eval()(x), bn.eval()(x)):
        torch.testing.assert_close(out, expected)
    # Folded: no SyncBatchNorm forward runs. (Counted by wrapping the
    # class's forward: a hook would make the backbone call the module.)
    calls = []
    forward = mmcv_sync_bn.SyncBatchNorm.forward

    def counted(self, *args):
        calls.append(1)
        return forward(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmcv_sync_bn.SyncBatchNorm, 'forward', counted)
        sync.eval()(x)
        assert not calls
        # ... and with a hook it runs as a module.
        sync.patch_embed.proj[1].register_forward_hook(lambda *args: None)
        sync.eval()(x)
        assert calls == [1]
