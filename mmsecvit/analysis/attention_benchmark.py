# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time the attention kernels of a backbone at the shapes it uses.

In the paper's clustering mode (``cluster_mode='num_clusters'``) the
clusters grow with the image: at 800x1333 a SecViT-S cluster holds about
2100 tokens, and the attention inside the clusters is most of the
backbone's multiply-adds and time. Whether a faster attention kernel could
close a latency gap is a question about those shapes alone, answered here:

1. :func:`record_attention_shapes` runs the backbone once and records the
   shape of every ``F.scaled_dot_product_attention`` call (q's and k's).
2. :func:`time_attention` times, for every distinct shape, each kernel of
   :data:`KERNELS` on random q, k and v of that shape: PyTorch's own choice
   (``'sdpa'``), the same arithmetic written out as matrix products and a
   softmax (``'explicit'``), and ``flex_attention`` compiled by Inductor
   (``'flex'``; compiled on the first call, which is not timed). Every
   kernel's output is compared with ``'sdpa'``'s.
3. :func:`format_attention_table` reports each kernel's time per call,
   its arithmetic rate (q k^T and the weighted sum of v: ``2 * B * heads *
   L_q * L_k * head_dims`` multiply-adds) and that rate's share of the
   machine's fp32 limit (:func:`~mmsecvit.analysis.benchmark.matmul_rate`),
   and the attention time of one forward pass (time per call times the
   calls).
"""
import math
import statistics
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mmsecvit.analysis.benchmark import check_repeats, synchronize
from mmsecvit.analysis.compile_check import raised_recompile_limit
from mmsecvit.models.layers.short_cluster_attention import short_cluster_kernel
from mmsecvit.utils.errors import ConfigValueError

#: Score values (B * heads * L_q * L_k) one product of ``'explicit'`` may
#: hold: 2**22 float32 values are 16 MiB, so a 2100-token cluster is done
#: one head at a time and 98-token clusters all at once.
EXPLICIT_SCORE_BUDGET = 2**22


@dataclass(frozen=True)
class AttentionShape:
    """The shape of one attention call, q (B, heads, L_q, head_dims) and k
    (B, heads, L_k, head_dims), with the number of calls of a forward.

    SecViT attends within all clusters of a head in one call, so for its
    blocks ``heads`` is the number of heads times the clusters of that
    length (the full clusters in one call, a shorter last one in another).
    """

    batch: int
    heads: int
    query_length: int
    key_length: int
    head_dims: int
    calls: int = 1

    @property
    def macs(self) -> int:
        """Multiply-adds of one call: q k^T and the weighted sum of v."""
        return (2 * self.batch * self.heads * self.query_length *
                self.key_length * self.head_dims)

    def __str__(self) -> str:
        return (f'{self.batch}x{self.heads}x{self.query_length}'
                f'x{self.key_length}x{self.head_dims}')


@dataclass
class KernelTiming:
    """Times (seconds per call) of one kernel at one shape."""

    times: List[float] = field(default_factory=list)
    max_abs_diff: float = 0.0
    error: Optional[str] = None

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan


class _RecordAttention(TorchFunctionMode):
    """Counts the q and k shapes of ``F.scaled_dot_product_attention``."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            query = args[0] if args else kwargs['query']
            key = args[1] if len(args) > 1 else kwargs['key']
            *lead, length, dims = query.shape
            heads = lead.pop() if lead else 1
            self.shapes[(math.prod(lead), heads, length, key.shape[-2],
                         dims)] += 1
        return func(*args, **kwargs)


def record_attention_shapes(model: nn.Module,
                            inputs: torch.Tensor) -> List[AttentionShape]:
    """The attention calls of one forward pass of ``model``.

    Every cluster is recorded as an SDPA call: the chunked kernel that
    SecViT's CPU inference uses for short clusters (see
    :mod:`~mmsecvit.models.layers.short_cluster_attention`) is switched off
    while recording.

    Args:
        model (nn.Module): Run once, without gradients, in its current
            mode.
        inputs (Tensor): Its input, e.g. (B, 3, H, W).

    Returns:
        list[AttentionShape]: One entry per distinct shape, with its number
        of calls; most multiply-adds first.
    """
    recorder = _RecordAttention()
    with torch.no_grad(), short_cluster_kernel(False), recorder:
        model(inputs)
    shapes = [
        AttentionShape(*key, calls=calls)
        for key, calls in recorder.shapes.items()
    ]
    return sorted(shapes, key=lambda s: -s.macs * s.calls)


def explicit_attention(q: torch.Tensor,
                       k: torch.Tensor,
                       v: torch.Tensor,
                       score_budget: int = EXPLICIT_SCORE_BUDGET
                       ) -> torch.Tensor:
    """``softmax(q k^T / sqrt(head_dims)) v`` as matrix products, a few
    heads at a time so that the scores stay within ``score_budget`` values
    (and the cache), each head whole.

    Args:
        q, k, v (Tensor): (B, heads, L, head_dims); k and v of one length.
        score_budget (int): Most score values held at once.

    Returns:
        Tensor: Like q, the attention output.
    """
    *lead, length, dims = q.shape
    rows = math.prod(lead)
    q = q.reshape(rows, length, dims) * dims**-0.5
    k = k.reshape(rows, -1, dims)
    v = v.reshape(rows, -1, v.shape[-1])
    out = q.new_empty(rows, length, v.shape[-1])
    group = max(1, score_budget // (length * k.shape[1]))
    for start in range(0, rows, group):
        part = slice(start, start + group)
        scores = torch.bmm(q[part], k[part].transpose(1, 2))
        torch.bmm(scores.softmax(dim=-1), v[part], out=out[part])
    return out.reshape(*lead, length, -1)


def _sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def _flex() -> Callable:
    # Imported here: torch < 2.5 has no flex_attention, and compiling it
    # needs a C++ compiler on the CPU.
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


#: Kernel name to a factory of the function of (q, k, v) it times.
KERNELS: Dict[str, Callable[[], Callable]] = {
    'sdpa': lambda: _sdpa,
    'explicit': lambda: explicit_attention,
    'flex': _flex,
}


def time_attention(shapes: Sequence[AttentionShape],
                   kernels: Sequence[str] = ('sdpa', 'explicit'),
                   repeats: int = 5,
                   device: str = 'cpu',
                   dtype: torch.dtype = torch.float32,
                   seed: int = 0) -> Dict[Tuple[AttentionShape, str],
                                          KernelTiming]:
    """Time each kernel at each shape on random q, k and v.

    Each kernel runs once untimed (``'flex'`` compiles then) and then
    ``repeats`` times. A kernel that fails at a shape records the error
    there and is still timed at the other shapes.

    Args:
        shapes (Sequence[AttentionShape]): From
            :func:`record_attention_shapes`.
        kernels (Sequence[str]): Names from :data:`KERNELS`; ``'sdpa'`` is
            the reference of the differences and is always timed first.
        repeats (int): Timed calls per kernel and shape.
        device (str): Where to run.
        dtype (torch.dtype): Of q, k and v.
        seed (int): Of the random inputs.

    Returns:
        dict: ``(shape, kernel)`` to its :class:`KernelTiming`.
    """
    unknown = [name for name in kernels if name not in KERNELS]
    if unknown:
        raise ConfigValueError(f'Unknown attention kernels {unknown}; '
                               f'choose from {sorted(KERNELS)}.')
    check_repeats(repeats)
    names = ['sdpa'] + [name for name in kernels if name != 'sdpa']
    # 'flex' compiles one graph per shape, all on one code object: more
    # shapes than Dynamo's recompile limit would fail.
    recompiles = (
        raised_recompile_limit(len(shapes))
        if 'flex' in names else nullcontext())
    with recompiles:
        return _time_kernels(shapes, names, repeats, torch.device(device),
                             dtype, seed)


def _time_kernels(shapes: Sequence[AttentionShape], names: Sequence[str],
                  repeats: int, device: torch.device, dtype: torch.dtype,
                  seed: int) -> Dict[Tuple[AttentionShape, str],
                                     KernelTiming]:
    generator = torch.Generator().manual_seed(seed)
    functions = {}
    timings = {}
    for shape in shapes:
        q, k, v = (torch.randn(
            shape.batch, shape.heads, length, shape.head_dims,
            generator=generator).to(device, dtype)
                   for length in (shape.query_length, shape.key_length,
                                  shape.key_length))
        reference = None
        for name in names:
            timing = timings[(shape, name)] = KernelTiming()
            try:
                if name not in functions:
                    functions[name] = KERNELS[name]()
                with torch.no_grad():
                    out = functions[name](q, k, v)
                    for _ in range(repeats):
                        synchronize(device)
                        start = time.perf_counter()
                        functions[name](q, k, v)
                        synchronize(device)
                        timing.times.append(time.perf_counter() - start)
            except Exception as error:  # reported in the table
                timing.error = f'{type(error).__name__}: {error}'
                continue
            if reference is None:
                reference = out
            timing.max_abs_diff = float(
                (out.float() - reference.float()).abs().max())
    return timings


def format_attention_table(shapes: Sequence[AttentionShape],
                           timings: Dict[Tuple[AttentionShape, str],
                                         KernelTiming],
                           limit_gmacs: Optional[float] = None) -> str:
    """A Markdown table: one row per shape and kernel, then one total row
    per kernel (attention time of one forward pass).

    Args:
        shapes (Sequence[AttentionShape]): The shapes timed.
        timings (dict): From :func:`time_attention`.
        limit_gmacs (float, optional): The machine's limit in GMAC/s; adds
            the share-of-limit column.
    """
    kernels = list(dict.fromkeys(name for _, name in timings))
    header = ('| shape (B x heads x L_q x L_k x d) | calls | GMACs per call '
              '| kernel | ms per call | GMAC/s | share of limit '
              '| ms per forward | max abs diff to sdpa |')
    lines = [header, '|' + '---|' * 9]

    def share(gmacs_per_s: float) -> str:
        if limit_gmacs is None or math.isnan(gmacs_per_s):
            return ''
        return f'{gmacs_per_s / limit_gmacs:.0%}'

    for shape in shapes:
        gmacs = shape.macs / 1e9
        for name in kernels:
            timing = timings[(shape, name)]
            if timing.error:
                lines.append(f'| {shape} | {shape.calls} | {gmacs:.3g} '
                             f'| {name} | failed: {timing.error[:80]} '
                             '| | | | |')
                continue
            rate = gmacs / timing.median
            lines.append(
                f'| {shape} | {shape.calls} | {gmacs:.3g} | {name} '
                f'| {timing.median * 1e3:.2f} | {rate:.1f} | {share(rate)} '
                f'| {timing.median * shape.calls * 1e3:.1f} '
                f'| {timing.max_abs_diff:.1e} |')
    total_gmacs = sum(s.macs * s.calls for s in shapes) / 1e9
    for name in kernels:
        per_forward = [
            timings[(s, name)].median * s.calls for s in shapes
            if not timings[(s, name)].error
        ]
        if len(per_forward) < len(shapes):
            continue  # failed somewhere: no total
        seconds = sum(per_forward)
        rate = total_gmacs / seconds
        lines.append(f'| all | {sum(s.calls for s in shapes)} '
                     f'| {total_gmacs:.3g} in all | {name} | '
                     f'| {rate:.1f} | {share(rate)} | {seconds * 1e3:.1f} '
                     '| |')
    return '\n'.join(lines)
