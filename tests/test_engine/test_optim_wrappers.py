# Copyright (c) mmsecvit contributors. All rights reserved.
"""Mixed precision training steps of SecViT under bfloat16 autocast."""
import torch
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper

from mmsecvit.registry import MODELS
from mmsecvit.testing import TEST_ARCH


class _BackboneRegressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = MODELS.build(
            dict(type='mmsecvit.SecViT', arch=TEST_ARCH))
        self.output_dtypes = []

    def forward(self, inputs, mode='loss'):
        features = self.backbone(inputs)
        self.output_dtypes = [f.dtype for f in features]
        return dict(loss=sum((f.float()**2).mean() for f in features))


def test_secvit_trains_under_cpu_bfloat16_autocast_without_nan():
    torch.manual_seed(0)
    model = _BackboneRegressor()
    optim_wrapper = build_optim_wrapper(
        model,
        dict(
            type='BF16AutocastOptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-3)))
    inputs = torch.randn(2, 3, 64, 96) * 3
    for _ in range(3):
        with optim_wrapper.optim_context(model):
            losses = model(inputs)
        optim_wrapper.backward(losses['loss'])
        assert torch.isfinite(losses['loss'])
        # The convolutions and linear layers really ran in bfloat16.
        assert torch.bfloat16 in model.output_dtypes
        for name, param in model.named_parameters():
            assert param.grad is None or torch.isfinite(param.grad).all(), name
        optim_wrapper.step()
        optim_wrapper.zero_grad()
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), name
