# Copyright (c) mmsecvit contributors. All rights reserved.
"""Workarounds for a torch.compile bug that SecViT's training graphs hit.

Inductor (torch 2.13) with dynamic shapes fails to compile a training
graph in which a *view* is saved for the backward pass, e.g. the NCHW
permute of a channels-last map that the next convolution keeps for its
weight gradient::

    torch._inductor.exc.InductorError: TypeError: cannot determine truth
    value of Relational: 64*s0*s53 < 64

For every graph output that is a view, Inductor orders the view's symbolic
strides with plain comparisons, without the shape environment that knows
every size is at least 2 (``torch/_inductor/graph.py``, ``run_node`` ->
``ir.get_stride_order``). Upstream: pytorch/pytorch#185510. The minimal
reproduction is in docs/benchmark.md.

A copy does not help by itself: AOTAutograd's partitioner finds a copy
cheap to recompute in the backward pass and saves the view instead. It
does not recompute custom operators, so the copy is one:
``mmsecvit::materialize``. (``torch._functorch.config.recompute_views =
True``, which makes the partitioner never save views, also avoids the
failure, but it is a process-wide setting.)

The workarounds act only while a graph is captured
(``torch.compiler.is_compiling()``); eager code is unchanged.
"""
import torch

_CUSTOM_OPS = hasattr(torch.library, 'custom_op')  # torch >= 2.4

if _CUSTOM_OPS:

    @torch.library.custom_op('mmsecvit::materialize', mutates_args=())
    def _materialize(x: torch.Tensor) -> torch.Tensor:
        return x.clone()  # a dense x keeps its strides

    @_materialize.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    def _materialize_backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad

    _materialize.register_autograd(_materialize_backward)


def own_memory_when_compiling(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, or while torch.compile captures a graph, a copy of it
    with the same strides that the backward pass keeps instead of the
    view ``x`` (see the module docstring). It costs one copy of ``x`` in
    compiled code. A torch without custom operators (< 2.4) gets a plain
    copy, which the partitioner may replace by the view again; this has
    not been tried.

    Args:
        x (Tensor): A view, e.g. a permuted map, that a following operation
            saves for its backward pass.

    Returns:
        Tensor: ``x``, or a tensor equal to it that owns its memory.
    """
    if not torch.compiler.is_compiling():
        return x
    if _CUSTOM_OPS:
        return _materialize(x)
    return x.clone()
