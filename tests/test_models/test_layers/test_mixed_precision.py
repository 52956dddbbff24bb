# Copyright (c) mmsecvit contributors. All rights reserved.
"""SEC attention and RoPE in low precision: autocast and bf16/fp16
parameters."""
import pytest
import torch
import torch.nn.functional as F

from mmsecvit.models import SecViT
from mmsecvit.models.layers import RoPE2d, sec_order
from mmsecvit.testing.archs import TEST_ARCH

LOW_PRECISION = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_rope_tables_of_low_precision_model_equal_float32_tables(dtype):
    model = SecViT(TEST_ARCH)
    hw = (120, 200)  # positions up to 199: bf16/fp16 phases are far off
    expected = [stage.RoPE(hw) for stage in model.layers]
    model.to(dtype)
    assert 'layers.0.RoPE.angle' in model.state_dict()
    for stage, (sin32, cos32) in zip(model.layers, expected):
        sin, cos = stage.RoPE(hw)
        # Computed in float32: cast to ``dtype`` at use, they are the
        # float32 tables rounded once.
        assert sin.dtype == cos.dtype == torch.float32
        assert torch.equal(sin.to(dtype), sin32.to(dtype))
        assert torch.equal(cos.to(dtype), cos32.to(dtype))


def test_rope_tables_of_float64_model_are_float64():
    sin, cos = RoPE2d(16, 2).double()((3, 4))
    assert sin.dtype == cos.dtype == torch.float64


@pytest.fixture
def sdpa_dtypes(monkeypatch):
    """The dtypes of q, k and v of every attention kernel call."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, *args, **kwargs):
        calls.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', recording_sdpa)
    return calls


@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_qkv_reach_attention_kernel_in_autocast_dtype(dtype, sdpa_dtypes):
    model = SecViT(TEST_ARCH).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        model(torch.randn(1, 3, 64, 72))
    # Clustered stages call the kernel once or twice, the global one once.
    assert len(sdpa_dtypes) >= 4
    assert set(sdpa_dtypes) == {(dtype, dtype, dtype)}


def low_precision_keys(dtype):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 2, 4096, 16, generator=gen).to(dtype)


@pytest.mark.parametrize('dtype', LOW_PRECISION)
@pytest.mark.parametrize('autocast', [False, True])
def test_sec_order_ranks_low_precision_keys_in_float32(dtype, autocast):
    # 4096 similarities in [-1, 1]: bf16/fp16 arithmetic (the matrix
    # product under autocast) would round neighbours to equal values.
    keys = low_precision_keys(dtype)
    expected = sec_order(keys.float())
    with torch.autocast('cpu', dtype=dtype, enabled=autocast):
        order = sec_order(keys)
    assert torch.equal(order, expected)
