# Copyright (c) mmsecvit contributors. All rights reserved.
"""The weight-gradient benchmark of the dense convolutions records the
backbone's convolutions, computes both gradients alike and reports where
the training step takes which (no timing asserts)."""
import os.path as osp
import runpy
from unittest import mock

import pytest
import torch

from mmsecvit.analysis.conv_grad_benchmark import (DenseConvShape,
                                                   format_conv_grad_table,
                                                   record_dense_convs,
                                                   time_weight_grads)
from mmsecvit.models import SecViT
from mmsecvit.testing.archs import TEST_ARCH
from mmsecvit.utils.errors import ConfigValueError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools',
                'benchmark_conv_grad.py')


def stem_and_downsampling(size=(64, 64), batch=2):
    model = SecViT(arch=TEST_ARCH).train()
    return model, record_dense_convs(model, torch.rand(batch, 3, *size))


def test_records_the_stem_and_the_downsampling_layers():
    model, shapes = stem_and_downsampling((64, 80))
    # The test arch's stem: 3 to 16 (stride 2), twice 16 to 16, 16 to 32
    # (stride 2); then three downsamplings doubling the channels.
    assert [(s.input_shape[1], s.out_channels, s.stride[0], s.calls)
            for s in shapes] == [(3, 16, 2, 1), (16, 16, 1, 2),
                                 (16, 32, 2, 1), (32, 64, 2, 1),
                                 (64, 128, 2, 1), (128, 256, 2, 1)]
    assert shapes[0].input_shape == (2, 3, 64, 80)
    assert shapes[0].output_size == (32, 40)
    assert shapes[-1].input_shape == (2, 128, 4, 5)
    assert shapes[-1].output_size == (2, 3)
    assert shapes[-1].macs == 2 * 2 * 3 * 256 * 128 * 9
    # The hooks are gone: the training step takes its own path again.
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_both_gradients_agree_and_the_training_steps_choice_is_reported():
    _, shapes = stem_and_downsampling()
    with mock.patch.object(torch.backends.cpu, 'get_cpu_capability',
                           return_value='AVX2'):
        timings, applies = time_weight_grads(shapes, repeats=2)
    for shape in shapes:
        assert timings[(shape, 'patches')].max_abs_diff < 1e-3
        assert len(timings[(shape, 'onednn')].times) == 2
        assert len(timings[(shape, 'patches')].times) == 2
        # On an AVX2 CPU: at least 32 input and output channels.
        assert applies[shape] == (min(shape.input_shape[1],
                                      shape.out_channels) >= 32)
    table = format_conv_grad_table(shapes, timings, applies, 50.0)
    lines = table.splitlines()
    assert lines[0] == 'fp32 limit: 50.0 GMAC/s'
    rows = [line for line in lines if line.startswith('| ')][1:]
    assert len(rows) == len(shapes) + 1
    assert [row.split(' | ')[6] for row in rows[:-1]] == [
        'yes' if applies[s] else 'no' for s in shapes
    ]
    assert rows[-1].startswith("| all, one forward's convolutions")


def test_on_avx512_the_32_channel_inputs_keep_onednn():
    shape = DenseConvShape((1, 32, 9, 10), 64, (3, 3), (2, 2), (1, 1))
    wide = DenseConvShape((1, 64, 9, 10), 64, (3, 3), (2, 2), (1, 1))
    with mock.patch.object(torch.backends.cpu, 'get_cpu_capability',
                           return_value='AVX512'):
        _, applies = time_weight_grads([shape, wide], repeats=1)
    assert applies == {shape: False, wide: True}


def test_no_timed_call_is_refused():
    with pytest.raises(ConfigValueError, match='repeats must be at least 1'):
        time_weight_grads([], repeats=0)


def test_tool_prints_the_table(capsys):
    main = runpy.run_path(TOOL)['main']
    main(['--arch', 'test', '--size', '64x64', '--repeats', '1',
          '--limit-size', '64'])
    out = capsys.readouterr().out
    assert '6 dense convolution shapes, 7 calls per forward' in out
    assert 'fp32 limit: ' in out
    assert "| all, one forward's convolutions" in out


def test_tool_refuses_a_bad_batch():
    main = runpy.run_path(TOOL)['main']
    with pytest.raises(ConfigValueError, match='--batch must be at least 1'):
        main(['--arch', 'test', '--batch', '0'])
