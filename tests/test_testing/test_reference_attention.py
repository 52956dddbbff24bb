# Copyright (c) mmsecvit contributors. All rights reserved.
"""The reference attention is swapped into the model, and out again, in one
place; the comparison feeds both paths the same inputs."""
import pytest
import torch

from mmsecvit.models import SecViT
from mmsecvit.models.layers import sec_attention
from mmsecvit.testing import (TEST_ARCH, compare_with_reference_attention,
                              randomize_weights, use_reference_attention)


def small_model():
    model = SecViT(arch=TEST_ARCH, drop_path_rate=0.)
    return randomize_weights(model.double(), seed=0).eval()


@pytest.mark.parametrize(
    'context', [use_reference_attention, compare_with_reference_attention])
def test_attention_swap_is_undone_after_the_context(context):
    fast = sec_attention.clustered_attention_packed
    with pytest.raises(RuntimeError):
        with context():
            assert sec_attention.clustered_attention_packed is not fast
            raise RuntimeError('leave the context through an error')
    assert sec_attention.clustered_attention_packed is fast


def test_comparison_reports_every_attention_call():
    model = small_model()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        with use_reference_attention():
            reference = model(x)
        with compare_with_reference_attention() as diffs:
            compared = model(x)
    assert len(diffs) == sum(TEST_ARCH['depths'])
    assert max(diffs) < 1e-10
    # The reference's output is what goes on through the model.
    for a, b in zip(reference, compared):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
