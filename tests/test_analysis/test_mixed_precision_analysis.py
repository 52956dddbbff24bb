# Copyright (c) mmsecvit contributors. All rights reserved.
import math

import torch

from mmsecvit.analysis.mixed_precision import (activation_peaks,
                                               cluster_agreement)
from mmsecvit.models import SecViT
from mmsecvit.testing.archs import arch_with

ARCH = arch_with(depths=[2, 1, 1, 1])


def test_cluster_agreement_has_one_share_per_block_of_the_stage():
    model = SecViT(ARCH).eval()
    agreement = cluster_agreement(model, torch.randn(1, 3, 64, 64),
                                  torch.bfloat16)
    assert len(agreement) == 2
    assert all(0 <= share <= 1 for share in agreement)


def test_activation_peaks_cover_stem_and_stages_and_keep_nan():
    model = SecViT(ARCH).eval()
    x = torch.randn(1, 3, 64, 64)
    peaks = activation_peaks(model, x)
    assert set(peaks) == {'stem', 'stage0', 'stage1', 'stage2', 'stage3'}
    assert all(0 < peak < math.inf for peak in peaks.values())
    # An overflow in one block must not be hidden by a later finite peak.
    model.layers[1].blocks[0].ffn.fc1.register_forward_hook(
        lambda module, args, out: out * math.nan)
    assert math.isnan(activation_peaks(model, x)['stage1'])
