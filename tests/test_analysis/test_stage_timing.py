# Copyright (c) mmsecvit contributors. All rights reserved.
from unittest import mock

import pytest
import torch
import torch.nn as nn

from mmsecvit.analysis import stage_timing
from mmsecvit.analysis.flops import count_flops
from mmsecvit.analysis.stage_timing import (REST, TOTAL, PartTimes,
                                            backbone_parts, format_part_table,
                                            part_gmacs, time_parts)
from mmsecvit.models import SecViT
from mmsecvit.testing import TEST_ARCH
from mmsecvit.utils.errors import ConfigValueError


class FakeClock:
    """A clock that only the toy backbones below move."""

    def __init__(self):
        self.now = 0.

    def __call__(self):
        return self.now


class Ticking(nn.Module):
    """Moves the clock by ``seconds`` and logs its name when called."""

    def __init__(self, clock, seconds, name, log):
        super().__init__()
        self.clock, self.seconds, self.name, self.log = (clock, seconds,
                                                         name, log)

    def forward(self, x):
        self.clock.now += self.seconds
        self.log.append(self.name)
        return x


class ToyBackbone(nn.Module):
    """A stem and stages that take the given seconds, and ``rest`` seconds
    outside them."""

    def __init__(self, clock, stem, stages, rest, name, log,
                 attribute='layers'):
        super().__init__()
        self.patch_embed = Ticking(clock, stem, name, log)
        setattr(self, attribute,
                nn.ModuleList(Ticking(clock, s, name, log) for s in stages))
        self.attribute = attribute
        self.outside = Ticking(clock, rest, name, log)

    def forward(self, x):
        x = self.patch_embed(x)
        for stage in getattr(self, self.attribute):
            x = stage(x)
        return self.outside(x)


def test_parts_are_the_stem_and_the_stages_of_secvit_and_swin():
    from mmdet.models.backbones import SwinTransformer
    secvit = SecViT(arch=TEST_ARCH)
    swin = SwinTransformer(
        embed_dims=16, depths=(1, 1), num_heads=(1, 2), out_indices=(0, 1))
    assert [name for name, _ in backbone_parts(secvit)] == [
        'patch_embed', 'layers.0', 'layers.1', 'layers.2', 'layers.3'
    ]
    assert [name for name, _ in backbone_parts(swin)
            ] == ['patch_embed', 'stages.0', 'stages.1']
    parts = dict(backbone_parts(secvit))
    assert parts['layers.2'] is secvit.layers[2]


def test_a_model_without_stem_and_stages_is_refused_with_what_it_needs():
    with pytest.raises(ConfigValueError, match='no patch_embed and stages'):
        backbone_parts(nn.Sequential(nn.Conv2d(3, 8, 3)))


def test_each_part_its_own_seconds_the_rest_what_lies_outside():
    clock, log = FakeClock(), []
    first = ToyBackbone(clock, 1., [2., 3.], 0.5, 'first', log)
    second = ToyBackbone(clock, 4., [5.], 0.25, 'second', log,
                         attribute='stages')
    times = time_parts([first, second], torch.zeros(1), warmup=1,
                       repeats=3, clock=clock)
    assert times[0].seconds == {
        'patch_embed': [1.] * 3,
        'layers.0': [2.] * 3,
        'layers.1': [3.] * 3,
        TOTAL: [6.5] * 3,
        REST: [0.5] * 3,
    }
    assert times[1].seconds == {
        'patch_embed': [4.] * 3,
        'stages.0': [5.] * 3,
        TOTAL: [9.25] * 3,
        REST: [0.25] * 3,
    }
    # The models take turns, forward by forward (warm-up included).
    turns = [name for i, name in enumerate(log) if i == 0 or
             log[i - 1] != name]
    assert turns == ['first', 'second'] * 4
    # No hook is left behind.
    for model in (first, second):
        assert not any(m._forward_hooks or m._forward_pre_hooks
                       for m in model.modules())


def test_a_part_run_twice_counts_twice_one_not_run_counts_nothing():

    class Uneven(ToyBackbone):

        def forward(self, x):
            self.patch_embed(x)
            self.layers[0](x)
            self.layers[0](x)  # run twice, layers[1] never
            return self.outside(x)

    clock = FakeClock()
    model = Uneven(clock, 1., [2., 3.], 0.5, 'm', [])
    times, = time_parts([model], torch.zeros(1), warmup=0, repeats=2,
                        clock=clock)
    assert times.seconds == {
        'patch_embed': [1.] * 2,
        'layers.0': [4.] * 2,
        'layers.1': [0.] * 2,
        TOTAL: [5.5] * 2,
        REST: [0.5] * 2,
    }


def test_hooks_are_removed_when_a_forward_fails():

    class Failing(ToyBackbone):

        def forward(self, x):
            self.patch_embed(x)
            raise RuntimeError('out of memory')

    clock = FakeClock()
    model = Failing(clock, 1., [1.], 0., 'm', [])
    with pytest.raises(RuntimeError, match='out of memory'):
        time_parts([model], torch.zeros(1), warmup=0, clock=clock)
    assert not any(m._forward_hooks or m._forward_pre_hooks
                   for m in model.modules())


def test_every_reading_waits_for_the_device():
    # On CUDA the kernels run asynchronously: each reading of the clock
    # must follow a synchronisation of the input's device.
    clock, events = FakeClock(), []

    def read():
        events.append('read')
        return clock()

    model = ToyBackbone(clock, 1., [1., 1.], 0., 'm', [])
    with mock.patch.object(stage_timing, 'synchronize',
                           lambda device: events.append(device)):
        time_parts([model], torch.zeros(1), warmup=0, repeats=2, clock=read)
    assert events.count('read') == 2 * (2 + 2 * 3)
    for i, event in enumerate(events):
        if event == 'read':
            assert events[i - 1] == torch.device('cpu')


def test_repeats_below_one_are_refused():
    with pytest.raises(ConfigValueError, match='repeats'):
        time_parts([], torch.zeros(1), repeats=0)


def test_part_gmacs_add_up_to_the_whole_forward():
    model = SecViT(arch=TEST_ARCH).eval()
    x = torch.rand(2, 3, 64, 64)
    gmacs = part_gmacs(model, x)
    flops = count_flops(model, (x[:1], ))
    assert gmacs['layers.1'] == pytest.approx(
        2 * flops['by_module']['layers.1'] / 1e9)
    assert gmacs[TOTAL] == pytest.approx(2 * flops['total'] / 1e9)
    parts = sum(v for k, v in gmacs.items() if k not in (TOTAL, REST))
    assert parts + gmacs[REST] == pytest.approx(gmacs[TOTAL])
    assert 0 <= gmacs[REST] < 0.01 * gmacs[TOTAL]  # the output norms


def _times(**seconds):
    return PartTimes({name: [value] for name, value in seconds.items()})


def test_table_compares_the_parts_by_position():
    times = [
        _times(**{'patch_embed': .002, 'layers.0': .010, 'layers.1': .030,
                  REST: .001, TOTAL: .043}),
        _times(**{'patch_embed': .001, 'stages.0': .020, REST: .002,
                  TOTAL: .023}),
    ]
    gmacs = [
        {'patch_embed': .1, 'layers.0': .5, 'layers.1': 1.5, REST: 0.,
         TOTAL: 2.1},
        {'patch_embed': .01, 'stages.0': 1., REST: 0., TOTAL: 1.01},
    ]
    table = format_part_table(['secvit', 'swin'], times, gmacs, limit=100.)
    lines = table.splitlines()
    assert lines[0] == ('| part | secvit ms | GMACs | GMAC/s | swin ms | '
                        'GMACs | GMAC/s | secvit / swin |')
    assert lines[2] == ('| stem | 2.0 | 0.10 | 50.0 (50%) | 1.0 | 0.01 | '
                        '10.0 (10%) | 2.00x |')
    assert lines[3] == ('| stage 1 | 10.0 | 0.50 | 50.0 (50%) | 20.0 | '
                        '1.00 | 50.0 (50%) | 0.50x |')
    # The second model has no second stage.
    assert lines[4] == '| stage 2 | 30.0 | 1.50 | 50.0 (50%) |  |  |  |  |'
    assert lines[5] == ('| outside the parts | 1.0 | 0.00 | - | 2.0 | 0.00 '
                        '| - | 0.50x |')
    assert lines[6].startswith('| whole forward | 43.0 | 2.10 | 48.8 (49%) '
                               '| 23.0 | 1.01 | 43.9 (44%) | 1.87x |')
    assert 'fp32 limit, 100.0 GMAC/s' in table
    # Without a limit, no shares.
    assert '%' not in format_part_table(['secvit', 'swin'], times, gmacs)
