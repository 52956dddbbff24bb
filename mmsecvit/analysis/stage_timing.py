# Copyright (c) mmsecvit contributors. All rights reserved.
"""Where a staged backbone's inference time goes, part by part.

A whole-model latency says how far SecViT is from Swin-T, not where. This
module times the stem and every stage of each backbone within the same
forwards (forward hooks on the parts; the models take turns, so a slow
phase of the machine hits all of them alike), counts each part's
multiply-adds with :func:`~mmsecvit.analysis.flops.count_flops` and
divides: a part far below the machine's fp32 limit (the large matrix
product of :func:`~mmsecvit.analysis.benchmark.matmul_rate`) spends its
time in memory-bound or small operations, a part near it does more
arithmetic than its counterpart.

The parts are the stem (``patch_embed``) and the stages (``layers[i]`` in
SecViT, ``stages[i]`` in mmdet's Swin, downsampling included); what the
forward does outside them (e.g. the output norms) is reported as ``rest``.
"""
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmsecvit.utils.errors import ConfigValueError
from .benchmark import check_repeats, synchronize
from .compile_check import backbone_stages
from .flops import count_flops

#: The name of the whole forward in :attr:`PartTimes.seconds`.
TOTAL = 'total'
#: The time of the forward outside the parts.
REST = 'rest'


def backbone_parts(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The stem and the stages of a staged backbone, by their names in
    ``model.named_modules()``: ``patch_embed``, then SecViT's
    ``layers.i`` or Swin's ``stages.i``.

    Args:
        model (nn.Module): The backbone.

    Raises:
        ConfigValueError: The model has no ``patch_embed`` and stages.
    """
    found = backbone_stages(model)
    stem = getattr(model, 'patch_embed', None)
    if stem is None or found is None:
        raise ConfigValueError(
            f'{type(model).__name__} has no patch_embed and stages (layers '
            'as in SecViT, stages as in Swin) to time part by part.')
    attribute, stages = found
    return [('patch_embed', stem)] + [(f'{attribute}.{i}', stage)
                                      for i, stage in enumerate(stages)]


@dataclass
class PartTimes:
    """Per forward, the seconds of each part, the whole (:data:`TOTAL`)
    and the rest (:data:`REST`), in the order of the forwards."""
    seconds: Dict[str, List[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])


@contextmanager
def _part_timers(parts: Sequence[Tuple[str, nn.Module]],
                 device: torch.device, seconds: Dict[str, float],
                 clock: Callable[[], float]) -> Iterator[None]:
    """Forward hooks adding each part's seconds to ``seconds`` (a part
    called twice counts twice; CUDA synchronised before each reading);
    removed on exit."""
    starts: Dict[str, float] = {}

    def start(name):

        def hook(module, args):
            synchronize(device)
            starts[name] = clock()

        return hook

    def stop(name):

        def hook(module, args, output):
            synchronize(device)
            seconds[name] = seconds.get(name, 0.) + clock() - starts.pop(name)

        return hook

    handles = []
    try:
        for name, module in parts:
            handles.append(module.register_forward_pre_hook(start(name)))
            handles.append(module.register_forward_hook(stop(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def time_parts(models: Sequence[nn.Module],
               x: torch.Tensor,
               warmup: int = 1,
               repeats: int = 10,
               clock: Callable[[], float] = time.perf_counter
               ) -> List[PartTimes]:
    """Time the parts (see :func:`backbone_parts`) of each model in
    inference, the models taking turns forward by forward.

    Args:
        models (Sequence[nn.Module]): Backbones in eval mode, on the device
            of ``x``.
        x (Tensor): Their input.
        warmup (int): Untimed forwards of each model first.
        repeats (int): Timed forwards of each model.
        clock (callable): Returns the time in seconds.

    Returns:
        list[PartTimes]: Per model, ``repeats`` readings of each part, of
        :data:`TOTAL` and of :data:`REST` (the total less its parts).
    """
    check_repeats(repeats)
    device = x.device
    # Found first, so that a model without stages fails before warm-up.
    model_parts = [backbone_parts(model) for model in models]
    results = [PartTimes() for _ in models]
    with torch.no_grad():
        for _ in range(warmup):
            for model in models:
                model(x)
        for _ in range(repeats):
            for model, parts, times in zip(models, model_parts, results):
                seconds: Dict[str, float] = {}
                with _part_timers(parts, device, seconds, clock):
                    synchronize(device)
                    start = clock()
                    model(x)
                    synchronize(device)
                    seconds[TOTAL] = clock() - start
                # A part the forward did not run (e.g. a stage after the
                # last output) took no time.
                reading = {name: seconds.get(name, 0.) for name, _ in parts}
                reading[REST] = seconds[TOTAL] - sum(reading.values())
                reading[TOTAL] = seconds[TOTAL]
                for name, value in reading.items():
                    times.seconds.setdefault(name, []).append(value)
    return results


def part_gmacs(model: nn.Module, x: torch.Tensor) -> Dict[str, float]:
    """GMACs of each part of ``model(x)`` (see :func:`backbone_parts`),
    of :data:`TOTAL` and of :data:`REST`, counted by
    :func:`~mmsecvit.analysis.flops.count_flops` on the first image of
    ``x`` and multiplied by the batch."""
    with torch.no_grad():
        flops = count_flops(model, (x[:1], ))
    batch = x.shape[0]
    gmacs = {
        name: flops['by_module'].get(name, 0) * batch / 1e9
        for name, _ in backbone_parts(model)
    }
    inside = sum(gmacs.values())
    gmacs[TOTAL] = flops['total'] * batch / 1e9
    gmacs[REST] = gmacs[TOTAL] - inside
    return gmacs


def format_part_table(labels: Sequence[str],
                      times: Sequence[PartTimes],
                      gmacs: Sequence[Dict[str, float]],
                      limit: Optional[float] = None) -> str:
    """A markdown table: per part (rows matched by position: the stems,
    the i-th stages, the rests and the totals of the models), each
    model's median milliseconds, GMACs and GMAC/s (with its share of
    ``limit``), and the first model's time over each other model's.
    Stages are numbered from 1, as in the papers (stage 1 is
    ``layers.0`` or ``stages.0``).

    Args:
        labels (Sequence[str]): Model names, the first is the reference
            of the ratios.
        times (Sequence[PartTimes]): From :func:`time_parts`.
        gmacs (Sequence[dict]): From :func:`part_gmacs`, per model.
        limit (float, optional): The machine's fp32 GMAC/s.
    """
    names = [[name for name in t.seconds if name not in (REST, TOTAL)] +
             [REST, TOTAL] for t in times]
    rows = max(len(n) for n in names)
    header = ['part']
    for label in labels:
        header += [f'{label} ms', 'GMACs', 'GMAC/s']
    header += [f'{labels[0]} / {label}' for label in labels[1:]]
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + '---|' * len(header),
    ]
    for row in range(rows):
        cells, medians = [], []
        for model_names, t, g in zip(names, times, gmacs):
            name = _row_name(model_names, row, rows)
            if name is None:
                cells += ['', '', '']
                medians.append(None)
                continue
            seconds = t.median(name)
            medians.append(seconds)
            cells += [
                f'{seconds * 1e3:.1f}', f'{g[name]:.2f}',
                _rate(g[name], seconds, limit)
            ]
        for seconds in medians[1:]:
            cells.append(f'{medians[0] / seconds:.2f}x'
                         if seconds and medians[0] else '')
        label = _row_label(row, rows)
        lines.append('| ' + ' | '.join([label] + cells) + ' |')
    if limit:
        lines.append('')
        lines.append(f'GMAC/s in parentheses: share of the fp32 limit, '
                     f'{limit:.1f} GMAC/s in this run.')
    return '\n'.join(lines)


def _row_name(names: List[str], row: int, rows: int) -> Optional[str]:
    """The part of a model shown in ``row``: the rest and the total in the
    last two rows, the others in order (None where a model has fewer)."""
    if row >= rows - 2:
        return names[row - rows]
    return names[row] if row < len(names) - 2 else None


def _row_label(row: int, rows: int) -> str:
    if row == rows - 1:
        return 'whole forward'
    if row == rows - 2:
        return 'outside the parts'
    return 'stem' if row == 0 else f'stage {row}'


def _rate(gmacs: float, seconds: float, limit: Optional[float]) -> str:
    if seconds <= 0 or gmacs <= 0:
        return '-'
    rate = gmacs / seconds
    share = f' ({rate / limit:.0%})' if limit else ''
    return f'{rate:.1f}{share}'
