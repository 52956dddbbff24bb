# Copyright (c) mmsecvit contributors. All rights reserved.
"""check_dynamic_compile counts graphs, compares with eager and records
errors per size (a small conv model, the eager backend: seconds)."""
import types

import pytest
import torch
import torch._dynamo
import torch.nn as nn

from mmsecvit.analysis.compile_check import (REGION_RECOMPILE_LIMIT,
                                             check_dynamic_compile,
                                             raised_recompile_limit,
                                             recompile_limit_name)


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


class Block(nn.Module):
    """A residual conv (TorchDynamo traces user modules; torch's own are
    skipped as compile targets)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x).relu()


class TwoStages(nn.Module):
    """Two stages of two like blocks each; the stages differ in width."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.first = nn.ModuleList(Block(4) for _ in range(2))
        self.down = nn.Conv2d(4, 8, 1)
        self.second = nn.ModuleList(Block(8) for _ in range(2))

    def forward(self, x):
        x = self.stem(x)
        for block in self.first:
            x = block(x)
        x = self.down(x)
        for block in self.second:
            x = block(x)
        return x


def _blocks(model):
    return [*model.first, *model.second]


def test_regions_are_compiled_on_a_copy_and_share_graphs():
    model = TwoStages().eval()
    seen = []

    name = recompile_limit_name()

    def limit_during_the_run(module, inputs):
        seen.append(getattr(torch._dynamo.config, name))

    model.stem.register_forward_pre_hook(limit_during_the_run)
    limit = getattr(torch._dynamo.config, name)
    report = check_dynamic_compile(
        model, [(16, 24), (20, 30)], backend='eager', regions=_blocks)
    assert not report.errors and report.max_diff == 0
    # One graph per stage (the blocks of a stage share it), none for the
    # stem and the downsampling conv, which run eagerly.
    assert report.graphs == 2
    # The model itself stays eager; the limit is raised only for the run.
    assert all(block._compiled_call_impl is None for block in _blocks(model))
    assert max(seen) >= REGION_RECOMPILE_LIMIT
    assert getattr(torch._dynamo.config, name) == limit


def test_recompile_limit_is_raised_under_either_name():
    """Older torch releases call Dynamo's recompile limit cache_size_limit."""
    old_config = types.SimpleNamespace(cache_size_limit=8)
    assert recompile_limit_name(old_config) == 'cache_size_limit'
    assert recompile_limit_name() in ('recompile_limit', 'cache_size_limit')
    name = recompile_limit_name()
    before = getattr(torch._dynamo.config, name)
    with raised_recompile_limit(before + 5):
        assert getattr(torch._dynamo.config, name) == before + 5
    with raised_recompile_limit(1):  # never lowered
        assert getattr(torch._dynamo.config, name) == before
    assert getattr(torch._dynamo.config, name) == before
