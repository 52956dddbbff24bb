# Copyright (c) mmsecvit contributors. All rights reserved.
"""check_dynamic_compile counts graphs, compares with eager and records
errors per size (a small conv model, the eager backend: seconds)."""
import pytest
import torch.nn as nn

from mmsecvit.analysis.compile_check import check_dynamic_compile


class Picky(nn.Module):
    """A conv that refuses inputs 40 pixels wide."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] == 40:
            raise RuntimeError('40 pixels wide')
        return self.conv(x)


def test_one_graph_for_many_sizes_and_errors_recorded_per_size():
    model = Picky().eval()
    report = check_dynamic_compile(
        model, [(16, 24), (20, 40), (32, 28)], backend='eager')
    assert set(report.diffs) == {(16, 24), (32, 28)}
    assert report.max_diff == 0
    assert 'RuntimeError' in report.errors[(20, 40)]
    assert report.graphs >= 1


def test_stop_on_error_raises():
    with pytest.raises(RuntimeError, match='40 pixels'):
        check_dynamic_compile(
            Picky().eval(), [(20, 40)], backend='eager', stop_on_error=True)


def test_dynamic_shapes_need_no_graph_per_size():
    report = check_dynamic_compile(
        nn.Conv2d(3, 4, 3, padding=1).eval(), [(16, 24), (20, 30), (32, 28)],
        backend='eager')
    assert report.graphs == 1 and not report.errors
