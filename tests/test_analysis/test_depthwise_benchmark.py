# Copyright (c) mmsecvit contributors. All rights reserved.
"""The depth-wise layout benchmark records every depth-wise convolution of
the backbone, fused or not, computes the same results in each layout and
times each call between two synchronisations (no timing asserts)."""
import os.path as osp
import runpy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsecvit.analysis import depthwise_benchmark
from mmsecvit.analysis.depthwise_benchmark import (LAYOUTS, PASSES,
                                                   DepthwiseConvShape,
                                                   format_depthwise_table,
                                                   record_depthwise_convs,
                                                   time_depthwise_layouts)
from mmsecvit.models import SecViT
from mmsecvit.testing.archs import TEST_ARCH
from mmsecvit.utils.errors import ConfigValueError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'benchmark_depthwise.py')

SMALL = DepthwiseConvShape((2, 8, 6, 7), (5, 5), padding=(2, 2))


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_records_the_three_depthwise_convolutions_of_every_block(mode):
    model = SecViT(arch=TEST_ARCH).train(mode == 'train')
    shapes = record_depthwise_convs(model, torch.rand(2, 3, 64, 80))
    # Per block: the position encoding's 3x3 and LePE's 5x5 on the
    # stage's channels, the FFN's 3x3 on three times as many; the first
    # two are functional calls in SecViT's fused path, recorded all the
    # same.
    expected = []
    for channels, (height, width) in zip([32, 64, 128, 256], [(16, 20),
                                                              (8, 10), (4, 5),
                                                              (2, 3)]):
        expected += [((2, channels, height, width), (3, 3)),
                     ((2, channels, height, width), (5, 5)),
                     ((2, 3 * channels, height, width), (3, 3))]
    assert [(s.input_shape, s.kernel_size) for s in shapes] == expected
    assert all(s.calls == 1 for s in shapes)
    assert [s.padding for s in shapes[:3]] == [(1, 1), (2, 2), (1, 1)]
    assert str(shapes[1]) == '32 channels, 5x5 stride 1, 2x16x20'


def test_counts_calls_and_ignores_dense_and_grouped_convolutions():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),  # dense
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),  # grouped, not depth-wise
        nn.Conv2d(8, 8, 3, padding=1, groups=8))
    shapes = record_depthwise_convs(model, torch.rand(1, 4, 5, 5))
    assert shapes == [
        DepthwiseConvShape((1, 8, 5, 5), (3, 3), padding=(1, 1), calls=2)
    ]


def test_every_layout_computes_the_same_results_and_is_timed(monkeypatch):
    synced = []
    monkeypatch.setattr(depthwise_benchmark, 'synchronize', synced.append)
    timings = time_depthwise_layouts([SMALL], repeats=2, device='cpu')
    assert set(timings) == {(SMALL, layout, pass_)
                            for layout in LAYOUTS
                            for pass_ in PASSES}
    for timing in timings.values():
        assert len(timing.times) == 2
        assert timing.max_abs_diff < 1e-4
    # Each timed call between two synchronisations of the device.
    assert synced == [torch.device('cpu')] * (2 * 2 * len(LAYOUTS) * 2)


def test_the_runs_take_and_give_their_layouts():
    x = torch.randn(*SMALL.input_shape)
    weight = torch.randn(8, 1, 5, 5)
    seen = []
    plain_conv2d = F.conv2d

    def conv2d(x, *args):
        seen.append(x.is_contiguous())
        return plain_conv2d(x, *args)

    channels_last = x.contiguous(memory_format=torch.channels_last)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(depthwise_benchmark.F, 'conv2d', conv2d)
        outs = {
            layout:
            depthwise_benchmark._convolution(
                SMALL, layout, weight,
                None)(x if layout == 'contiguous' else channels_last)
            for layout in LAYOUTS
        }
    # The convolution itself sees a contiguous map in both contiguous runs
    # (a channels-last (2, 8, 6, 7) map is not contiguous).
    assert seen == [False, True, True]
    assert outs['contiguous_copies'].is_contiguous(
        memory_format=torch.channels_last)
    assert not outs['contiguous_copies'].is_contiguous()
    torch.testing.assert_close(outs['contiguous'], outs['channels_last'])


def test_half_precision_runs():
    timings = time_depthwise_layouts([SMALL], ['forward'],
                                     repeats=1,
                                     dtype=torch.bfloat16)
    assert all(t.max_abs_diff < 0.1 for t in timings.values())


def test_table_has_a_row_per_convolution_and_pass_and_the_totals():
    shapes = [
        SMALL,
        DepthwiseConvShape((2, 8, 6, 7), (3, 3), (2, 2), (1, 1), calls=3)
    ]
    timings = time_depthwise_layouts(shapes, repeats=1)
    table = format_depthwise_table(shapes, timings)
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == 2 * len(shapes) + 2
    assert rows[2].startswith('| 8 channels, 3x3 stride 2, 2x6x7 | 3 '
                              '| forward |')
    assert rows[-2].startswith('| all, one forward pass | 4 | forward |')
    assert rows[-1].startswith('| all, one forward pass | 4 '
                               '| forward_backward |')
    # The total is time per call times the calls, summed.
    expected = sum(timings[(s, 'channels_last', 'forward')].median * s.calls
                   for s in shapes)
    assert rows[-2].split(' | ')[3] == f'{expected * 1e3:.3f}'


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigValueError, match='Unknown passes'):
        time_depthwise_layouts([SMALL], ['backward'])
    with pytest.raises(ConfigValueError, match='repeats must be at least 1'):
        time_depthwise_layouts([SMALL], repeats=0)


def test_tool_prints_the_table(capsys):
    main = runpy.run_path(TOOL)['main']
    main([
        '--arch', 'test', '--size', '64x64', '--batch', '1', '--repeats', '1',
        '--passes', 'forward'
    ])
    out = capsys.readouterr().out
    assert '12 depth-wise convolution shapes, 12 calls per forward; cpu, ' \
        'float32' in out
    assert '| all, one forward pass | 12 | forward |' in out
    assert 'forward_backward' not in out


def test_tool_refuses_a_bad_batch():
    main = runpy.run_path(TOOL)['main']
    with pytest.raises(ConfigValueError, match='--batch must be at least 1'):
        main(['--arch', 'test', '--batch', '0'])
