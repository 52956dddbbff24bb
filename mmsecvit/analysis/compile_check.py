# Copyright (c) mmsecvit contributors. All rights reserved.
"""Does a model compile with dynamic shapes, over how many graphs, and
does it still compute what it computes eagerly?

:func:`check_dynamic_compile` runs ``torch.compile(model, dynamic=True)``
on a series of input sizes and reports, per size, the largest difference
from the eager outputs or the error that compiling raised, the time of the
first compiled call (which includes compiling when the size needs a new
graph) and, on request, the eager and compiled latency; and the number of
graphs Dynamo built (each recompilation adds one).

With ``regions`` it compiles chosen submodules in place of the whole model
("regional compilation", e.g. :func:`backbone_blocks`): repeated blocks then
share their graphs, which cuts the compile time by about the number of
blocks per stage.
"""
import copy
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch._dynamo
import torch.nn as nn
from torch._dynamo.utils import counters

from mmsecvit.utils.errors import ConfigValueError

#: Dynamo's recompile limit while regions are compiled. All blocks of a
#: model share one code object (their class's ``forward``), so its graphs
#: (one per stage and split pattern of the clusters) count against one
#: limit; torch's default, 8, is below SecViT's 4 stages times up to 3
#: patterns, and beyond it Dynamo runs the blocks eagerly.
REGION_RECOMPILE_LIMIT = 64

#: Given a model, the submodules to compile one by one.
Regions = Callable[[nn.Module], Iterable[nn.Module]]


def backbone_stages(model: nn.Module) -> Optional[Tuple[str, nn.Module]]:
    """The stages of a staged backbone and the attribute holding them:
    SecViT's ``layers`` or mmdet's Swin's ``stages``; None for neither."""
    for attribute in ('layers', 'stages'):
        stages = getattr(model, attribute, None)
        if isinstance(stages, nn.Module):
            return attribute, stages
    return None


def backbone_blocks(model: nn.Module) -> List[nn.Module]:
    """The blocks of a staged backbone, the regions to compile one by one:
    SecViT's (``layers[i].blocks``) or mmdet's Swin's
    (``stages[i].blocks``).

    Args:
        model (nn.Module): The backbone.

    Raises:
        ConfigValueError: The model has neither layout.
    """
    found = backbone_stages(model)
    stages = None if found is None else found[1]
    if stages is None or not all(hasattr(s, 'blocks') for s in stages):
        raise ConfigValueError(
            f'{type(model).__name__} has no stages of blocks (layers[i].'
            'blocks as in SecViT, stages[i].blocks as in Swin) to compile '
            'one by one; compile the whole model instead.')
    return [block for stage in stages for block in stage.blocks]


def compile_regions(model: nn.Module, regions: Regions,
                    **kwargs) -> nn.Module:
    """A copy of ``model`` in which each module ``regions`` returns is
    compiled (``nn.Module.compile``: the state dict keys stay as they are);
    ``model`` itself stays eager.

    Args:
        model (nn.Module): The model whose regions to compile.
        regions (callable): E.g. :func:`backbone_blocks`.
        **kwargs: Arguments of ``torch.compile``.

    Returns:
        nn.Module: The copy.
    """
    compiled = copy.deepcopy(model)
    for module in regions(compiled):
        module.compile(**kwargs)
    return compiled


def recompile_limit_name(config=None) -> str:
    """The name of Dynamo's recompile limit in ``config`` (default
    ``torch._dynamo.config``): ``recompile_limit``, or ``cache_size_limit``
    in the torch releases before its rename (the new name is an alias of
    the old one where both exist)."""
    config = torch._dynamo.config if config is None else config
    return ('recompile_limit'
            if hasattr(config, 'recompile_limit') else 'cache_size_limit')


def raised_recompile_limit(limit: int):
    """A context raising Dynamo's recompile limit to at least ``limit``
    (under either name, see :func:`recompile_limit_name`)."""
    name = recompile_limit_name()
    config = torch._dynamo.config
    return config.patch(**{name: max(limit, getattr(config, name))})


def region_recompile_limit():
    """A context raising Dynamo's recompile limit to at least
    :data:`REGION_RECOMPILE_LIMIT`, for models compiled by regions."""
    return raised_recompile_limit(REGION_RECOMPILE_LIMIT)


@dataclass
class CompileReport:
    """What :func:`check_dynamic_compile` found.

    Args:
        graphs (int): Graphs Dynamo built over all sizes.
        diffs (dict): Size -> largest absolute difference from eager.
        errors (dict): Size -> the error compiling or running raised.
        first_call_s (dict): Size -> seconds of the first compiled call
            (compiling included when the size needed a new graph).
        eager_s, compiled_s (dict): Size -> median seconds of a forward,
            eager and compiled (only with ``repeats``).
    """
    graphs: int = 0
    diffs: Dict[Tuple[int, int], float] = field(default_factory=dict)
    errors: Dict[Tuple[int, int], str] = field(default_factory=dict)
    first_call_s: Dict[Tuple[int, int], float] = field(default_factory=dict)
    eager_s: Dict[Tuple[int, int], float] = field(default_factory=dict)
    compiled_s: Dict[Tuple[int, int], float] = field(default_factory=dict)

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values(), default=float('nan'))


def check_dynamic_compile(model: torch.nn.Module,
                          sizes: Sequence[Tuple[int, int]],
                          backend: str = 'inductor',
                          dtype: torch.dtype = torch.float32,
                          stop_on_error: bool = False,
                          log=None,
                          repeats: int = 0,
                          regions: Optional[Regions] = None) -> CompileReport:
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
        repeats (int): Timed forwards per size, eager and compiled in
            turn, after the first compiled call (0: no timing).
        regions (callable, optional): Given a model, returns the submodules
            to compile; a copy of ``model`` with those compiled (see
            :func:`compile_regions`) runs against ``model``. None compiles
            the whole model.
    """
    torch._dynamo.reset()
    counters.clear()
    if regions is None:
        compiled = torch.compile(model, backend=backend, dynamic=True)
        limit = nullcontext()
    else:
        compiled = compile_regions(
            model, regions, backend=backend, dynamic=True)
        limit = region_recompile_limit()
    with limit:
        return _run_sizes(model, compiled, sizes, dtype, stop_on_error, log,
                          repeats)


def _run_sizes(model: nn.Module, compiled: Callable,
               sizes: Sequence[Tuple[int, int]], dtype: torch.dtype,
               stop_on_error: bool, log, repeats: int) -> CompileReport:
    report = CompileReport()
    device = next(model.parameters()).device
    for size in sizes:
        size = tuple(size)
        x = torch.rand(1, 3, *size, dtype=dtype, device=device)
        try:
            with torch.no_grad():
                expected = _as_tuple(model(x))
                start = time.perf_counter()
                outs = _as_tuple(compiled(x))
                report.first_call_s[size] = _elapsed(start, device)
                if repeats > 0:
                    report.eager_s[size], report.compiled_s[size] = (
                        _median_latencies([model, compiled], x, repeats))
        except Exception as error:  # noqa: B902 (reported per size)
            if stop_on_error:
                raise
            report.errors[size] = f'{type(error).__name__}: {error}'
        else:
            report.diffs[size] = max_abs_diff(outs, expected)
        if log:
            log(_size_line(report, size))
    report.graphs = counters['stats']['unique_graphs']
    return report


def _elapsed(start: float, device: torch.device) -> float:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _median_latencies(models: Sequence[Callable], x: torch.Tensor,
                      repeats: int) -> Tuple[float, ...]:
    """Median seconds of a forward of each model, the models run in turn
    (so that drift of the machine affects them alike)."""
    times = [[] for _ in models]
    for _ in range(repeats):
        for model, record in zip(models, times):
            start = time.perf_counter()
            model(x)
            record.append(_elapsed(start, x.device))
    return tuple(statistics.median(record) for record in times)


def _size_line(report: CompileReport, size: Tuple[int, int]) -> str:
    line = f'{size[0]}x{size[1]}: '
    if size in report.errors:
        return line + report.errors[size]
    line += (f'max abs diff {report.diffs[size]:.2e}, first call '
             f'{report.first_call_s[size]:.1f} s')
    if size in report.compiled_s:
        line += (f', eager {report.eager_s[size]:.3f} s, compiled '
                 f'{report.compiled_s[size]:.3f} s')
    return line


def _as_tuple(outs) -> Tuple[torch.Tensor, ...]:
    return (outs, ) if isinstance(outs, torch.Tensor) else tuple(outs)


def max_abs_diff(outs: Sequence[torch.Tensor],
                 expected: Sequence[torch.Tensor]) -> float:
    """The largest absolute difference between ``outs`` and ``expected``,
    tensor by tensor; a ValueError where their shapes differ."""
    if [o.shape for o in outs] != [e.shape for e in expected]:
        raise ValueError('compiled and eager outputs differ in shape: '
                         f'{[tuple(o.shape) for o in outs]} vs '
                         f'{[tuple(e.shape) for e in expected]}')
    return max(float((o - e).abs().max()) for o, e in zip(outs, expected))
