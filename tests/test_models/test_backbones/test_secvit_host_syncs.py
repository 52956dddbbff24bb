# Copyright (c) mmsecvit contributors. All rights reserved.
"""The backbone never waits for the GPU: no value read back to the host and
no tensor made from host data inside forward or backward.

On CUDA each of these synchronises the host with the device (what
``torch.cuda.set_sync_debug_mode('error')`` catches; the GPU check in
``tools/misc/gpu_check.py`` runs that). On CPU the same operators are seen
by a dispatch mode.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmsecvit.models import SecViT
from mmsecvit.testing.archs import TEST_ARCH

# Device-to-host reads (.item(), bool(), nonzero's output size) and
# host-to-device copies of Python data (torch.tensor, new_tensor).
HOST_ROUND_TRIPS = {
    'aten._local_scalar_dense', 'aten.nonzero', 'aten.is_nonzero',
    'aten.equal', 'aten.lift_fresh'
}


class RecordOps(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('with_cp', [False, 'selective'])
def test_training_step_has_no_host_round_trips(dtype, with_cp):
    model = SecViT(TEST_ARCH, with_cp=with_cp).train()
    x = torch.randn(2, 3, 64, 72)  # a shorter last cluster in every stage
    with RecordOps() as recorder:
        with torch.autocast('cpu', dtype=dtype,
                            enabled=dtype != torch.float32):
            loss = sum(out.float().square().mean() for out in model(x))
        loss.backward()
    assert 'aten.convolution_backward' in recorder.ops  # backward seen
    assert not recorder.ops & HOST_ROUND_TRIPS


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_inference_has_no_host_round_trips(dtype):
    model = SecViT(TEST_ARCH).eval()
    with RecordOps() as recorder, torch.no_grad(), torch.autocast(
            'cpu', dtype=dtype, enabled=dtype != torch.float32):
        model(torch.randn(1, 3, 64, 72))
    assert not recorder.ops & HOST_ROUND_TRIPS
