# Copyright (c) mmsecvit contributors. All rights reserved.
"""Does a model compile with dynamic shapes, over how many graphs, and
does it still compute what it computes eagerly?

:func:`check_dynamic_compile` runs ``torch.compile(model, dynamic=True)``
on a series of input sizes and reports, per size, the largest difference
from the eager outputs or the error that compiling raised, and the number
of graphs Dynamo built (each recompilation adds one).
"""
from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

import torch
import torch._dynamo
from torch._dynamo.utils import counters


@dataclass
class CompileReport:
    """What :func:`check_dynamic_compile` found.

    Args:
        graphs (int): Graphs Dynamo built over all sizes.
        diffs (dict): Size -> largest absolute difference from eager.
        errors (dict): Size -> the error compiling or running raised.
    """
    graphs: int = 0
    diffs: Dict[Tuple[int, int], float] = field(default_factory=dict)
    errors: Dict[Tuple[int, int], str] = field(default_factory=dict)

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values(), default=float('nan'))


def check_dynamic_compile(model: torch.nn.Module,
                          sizes: Sequence[Tuple[int, int]],
                          backend: str = 'inductor',
                          dtype: torch.dtype = torch.float32,
                          stop_on_error: bool = False,
                          log=None) -> CompileReport:
    """Compile ``model`` with ``dynamic=True`` and run it on each size.

    Dynamo's caches are reset first, so the graph count is this model's.
    Compare in float64 for SecViT: in float32 a rounding difference between
    compiled and eager kernels can move a token across a cluster boundary.

    Args:
        model (nn.Module): Takes a (1, 3, H, W) image; returns a tensor or a
            sequence of tensors. Put it in eval mode first.
        sizes: Input heights and widths, in order.
        backend (str): ``torch.compile`` backend, e.g. 'inductor' or
            'aot_eager' (dynamic-shape tracing with eager kernels; fast).
        dtype (torch.dtype): Dtype of the inputs (the model must match).
        stop_on_error (bool): Raise the first error instead of recording
            it.
        log (callable, optional): Called with a line per size.
    """
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    report = CompileReport()
    device = next(model.parameters()).device
    for size in sizes:
        x = torch.rand(1, 3, *size, dtype=dtype, device=device)
        try:
            with torch.no_grad():
                expected = _as_tuple(model(x))
                outs = _as_tuple(compiled(x))
        except Exception as error:  # noqa: B902 (reported per size)
            if stop_on_error:
                raise
            report.errors[tuple(size)] = f'{type(error).__name__}: {error}'
        else:
            report.diffs[tuple(size)] = _max_abs_diff(outs, expected)
        if log:
            log(f'{size[0]}x{size[1]}: ' +
                (report.errors.get(tuple(size))
                 or f'max abs diff {report.diffs[tuple(size)]:.2e}'))
    report.graphs = counters['stats']['unique_graphs']
    return report


def _as_tuple(outs) -> Tuple[torch.Tensor, ...]:
    return (outs, ) if isinstance(outs, torch.Tensor) else tuple(outs)


def _max_abs_diff(outs: Sequence[torch.Tensor],
                  expected: Sequence[torch.Tensor]) -> float:
    if [o.shape for o in outs] != [e.shape for e in expected]:
        raise ValueError('compiled and eager outputs differ in shape: '
                         f'{[tuple(o.shape) for o in outs]} vs '
                         f'{[tuple(e.shape) for e in expected]}')
    return max(float((o - e).abs().max()) for o, e in zip(outs, expected))
