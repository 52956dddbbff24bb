# Copyright (c) mmsecvit contributors. All rights reserved.
"""Attention within short clusters on the CPU, a cache-sized chunk at a time.

PyTorch's fused CPU attention kernel splits the queries of each sequence
into blocks of 32 rows when the sequence is shorter than 192 tokens: a
98-token cluster (SecViT's length at 224x224 and in ``'cluster_size'``
mode) becomes blocks of 32, 32, 32 and 2 rows, each a small matrix product
with its own overhead. Measured with 2 threads, the kernel reaches 17-23
GMAC/s there, against about 60 for clusters of 2,000 tokens.

For inference, :func:`gather_attend_scatter` instead takes the clusters a
chunk at a time: it gathers the chunk's q, k and v rows into one reused
buffer, computes all of its clusters' scores with one batched matrix
product, normalises them in place and multiplies by v with a second one,
and scatters the result to token order. A chunk's buffers stay in the
cache (about 2 MiB each), so the gather and the scatter, memory-bound
passes over whole maps before, run on cache lines the products are about
to read or have just written.

The products are the same as the fused kernel's up to rounding (the order
of the sums differs): float32 results differ in the last bits, as between
two SDPA backends.

In training the same forward runs as one op,
``torch.ops.mmsecvit.short_cluster_attention``
(:func:`short_cluster_attention`, torch >= 2.4), whose backward
(:func:`gather_attend_scatter_backward`) recomputes each chunk's scores,
as the fused kernel's backward does, and forms the gradients of q, k and v
with batched products. It keeps the input rows and the output, no scores;
selective activation checkpointing keeps its output as it keeps SDPA's.
"""
from typing import ContextManager

import torch

from .capture import capturing_graph
from .switch import Switch

#: Clusters longer than this take the fused kernel. Measured with 2
#: threads (q, k and v of 4 heads, 4096 tokens, gather and scatter
#: included, two runs): 0.55-0.85x the fused kernel's time at 98, 128 and
#: 160 tokens, 0.8-0.95x at 192, and equal at 256.
MAX_CLUSTER_LENGTH = 192

#: Target size in bytes of a chunk's score buffer (clusters x L x L); the
#: gathered q, k and v of a chunk take about as much. 1-2 MiB were the
#: fastest of 0.5-4 MiB for SecViT-S's stages at 512x512 and 800x1333.
CHUNK_BYTES = 2 << 20

_switch = Switch()


def short_cluster_kernel(enabled: bool) -> ContextManager[None]:
    """Allow (``True``, the default outside this context) or forbid
    :func:`gather_attend_scatter` within the context; forbidden, every
    cluster takes ``scaled_dot_product_attention``.

    Examples:
        >>> with short_cluster_kernel(False):
        ...     outs = model(images)  # the fused SDPA kernel throughout
    """
    return _switch.set(enabled)


def short_cluster_kernel_applies(qkv: torch.Tensor, length: int) -> bool:
    """Whether :func:`gather_attend_scatter` runs for clusters of
    ``length`` tokens: a float32 or float64 CPU tensor, CPU autocast off,
    no graph captured, clusters of at most :data:`MAX_CLUSTER_LENGTH`
    tokens, not switched off by :func:`short_cluster_kernel`, and, where
    ``qkv`` records a gradient, a torch with ``torch.library.custom_op``
    (>= 2.4) for the op that carries the backward."""
    return (_switch.enabled and qkv.device.type == 'cpu'
            and qkv.dtype in (torch.float32, torch.float64)
            and length <= MAX_CLUSTER_LENGTH
            and (_attention_op is not None
                 or not (torch.is_grad_enabled() and qkv.requires_grad))
            and not torch.is_autocast_enabled('cpu')
            and not capturing_graph())


def _chunks(rows: torch.Tensor, source: torch.Tensor,
            length: int) -> tuple:
    """Clusters per chunk (a score buffer of about :data:`CHUNK_BYTES`),
    and the slice of ``source`` that each chunk gathers."""
    clusters = source.numel() // length
    cluster_bytes = length * length * rows.element_size()
    per_chunk = max(1, min(clusters, CHUNK_BYTES // cluster_bytes))
    step = per_chunk * length
    slices = [
        slice(start, min(start + step, source.numel()))
        for start in range(0, source.numel(), step)
    ]
    return per_chunk, slices


def _gather_probs(rows: torch.Tensor, index: torch.Tensor,
                  gathered: torch.Tensor, probs: torch.Tensor,
                  length: int) -> tuple:
    """Gather the rows at ``index`` (whole clusters of ``length`` tokens)
    into ``gathered`` and write ``softmax(scale q k^T)`` of each cluster
    into ``probs``; both are buffers of at least that many clusters.

    Returns:
        tuple[Tensor]: q, k, v (clusters, length, head_dims), views of
        ``gathered``, and the probabilities (clusters, length, length), a
        view of ``probs``.
    """
    num, d = index.numel() // length, rows.shape[-1] // 3
    buf = gathered[:num * length]
    torch.index_select(rows, 0, index, out=buf)
    q, k, v = buf.view(num, length, 3, d).unbind(2)
    p = probs[:num]
    torch.baddbmm(p, q, k.transpose(1, 2), beta=0, alpha=d**-0.5, out=p)
    torch.softmax(p, dim=-1, out=p)
    return q, k, v, p


def gather_attend_scatter(rows: torch.Tensor, source: torch.Tensor,
                          target: torch.Tensor, out_rows: torch.Tensor,
                          length: int) -> None:
    """Attention within clusters of ``length`` tokens, chunk by chunk.

    Args:
        rows (Tensor): (R, 3 * head_dims): q, k and v of one token and head
            per row.
        source (Tensor): Flat row indices into ``rows``, cluster after
            cluster (a multiple of ``length`` long).
        target (Tensor): Flat row indices into ``out_rows`` where each
            gathered row's output goes, in the order of ``source``.
        out_rows (Tensor): (R, head_dims), written at ``target``.
        length (int): Tokens per cluster.
    """
    d = out_rows.shape[-1]
    per_chunk, slices = _chunks(rows, source, length)
    gathered = rows.new_empty(per_chunk * length, 3 * d)
    probs = rows.new_empty(per_chunk, length, length)
    out = rows.new_empty(per_chunk * length, d)
    for index in slices:
        _, _, v, p = _gather_probs(rows, source[index], gathered, probs,
                                   length)
        o = out[:index.stop - index.start]
        torch.bmm(p, v, out=o.view(v.shape))
        out_rows.index_copy_(0, target[index], o)


def gather_attend_scatter_backward(rows: torch.Tensor,
                                   grad_out_rows: torch.Tensor,
                                   dot_rows: torch.Tensor,
                                   source: torch.Tensor, target: torch.Tensor,
                                   grad_rows: torch.Tensor,
                                   length: int) -> None:
    """The gradient of :func:`gather_attend_scatter` with respect to
    ``rows``, chunk by chunk, written into ``grad_rows`` at ``source``.

    For one cluster, with ``P = softmax(scale q k^T)`` recomputed and
    ``dO`` the output's gradient: ``dv = P^T dO``, ``dS = P * (dO v^T -
    rowsum(dO * O))``, ``dq = scale dS k`` and ``dk = scale dS^T q``.
    The forward's output enters only through ``rowsum(dO * O)``, computed
    once for all rows by the caller.

    Args:
        rows (Tensor): (R, 3 * head_dims), the forward's input.
        grad_out_rows (Tensor): (R, head_dims), the gradient of the
            forward's output.
        dot_rows (Tensor): (R,), ``(grad_out_rows * out_rows).sum(-1)``
            with the forward's output ``out_rows``.
        source, target (Tensor): As in :func:`gather_attend_scatter`.
        grad_rows (Tensor): (R, 3 * head_dims), written at ``source``.
        length (int): Tokens per cluster.
    """
    d = grad_out_rows.shape[-1]
    per_chunk, slices = _chunks(rows, source, length)
    gathered = rows.new_empty(per_chunk * length, 3 * d)
    probs = rows.new_empty(per_chunk, length, length)
    grad_gathered = rows.new_empty(per_chunk * length, 3, d)
    grad_out = rows.new_empty(per_chunk * length, d)
    grad_scores = rows.new_empty(per_chunk, length, length)
    scale = d**-0.5
    for index in slices:
        src, tgt = source[index], target[index]
        q, k, v, p = _gather_probs(rows, src, gathered, probs, length)
        num = p.shape[0]
        g_out = grad_out[:num * length]
        torch.index_select(grad_out_rows, 0, tgt, out=g_out)
        g_out = g_out.view(num, length, d)
        ds = grad_scores[:num]
        grads = grad_gathered[:num * length].view(num, length, 3, d)
        dq, dk, dv = grads.unbind(2)
        dv.copy_(torch.bmm(p.transpose(1, 2), g_out))
        torch.bmm(g_out, v.transpose(1, 2), out=ds)
        # rowsum(dO * O) of a query row is sum_j dP_ij P_ij.
        ds.sub_(dot_rows[tgt].view(num, length, 1)).mul_(p)
        torch.mul(torch.bmm(ds, k), scale, out=dq)
        torch.mul(torch.bmm(ds.transpose(1, 2), q), scale, out=dk)
        grad_rows.index_copy_(0, src, grads.view(-1, 3 * d))


def _attend_parts(rows: torch.Tensor, source: torch.Tensor,
                  target: torch.Tensor, full_rows: int, length: int,
                  tail_length: int) -> torch.Tensor:
    out = rows.new_empty(rows.shape[0], rows.shape[1] // 3)
    for part, part_length in _parts(full_rows, source.numel(), length,
                                    tail_length):
        gather_attend_scatter(rows, source[part], target[part], out,
                              part_length)
    return out


def _parts(full_rows: int, total: int, length: int, tail_length: int):
    """(slice of the indices, cluster length) of the full clusters and of
    the shorter last clusters, where there are any."""
    parts = [(slice(0, full_rows), length)] if full_rows else []
    if full_rows < total:
        parts.append((slice(full_rows, total), tail_length))
    return parts


if hasattr(torch.library, 'custom_op'):  # torch >= 2.4

    @torch.library.custom_op(
        'mmsecvit::short_cluster_attention', mutates_args=())
    def _attention_op(rows: torch.Tensor, source: torch.Tensor,
                      target: torch.Tensor, full_rows: int, length: int,
                      tail_length: int) -> torch.Tensor:
        return _attend_parts(rows, source, target, full_rows, length,
                             tail_length)

    @_attention_op.register_fake
    def _(rows, source, target, full_rows, length, tail_length):
        return rows.new_empty(rows.shape[0], rows.shape[1] // 3)

    @torch.library.custom_op(
        'mmsecvit::short_cluster_attention_backward', mutates_args=())
    def _attention_backward_op(grad_out_rows: torch.Tensor,
                               rows: torch.Tensor, out_rows: torch.Tensor,
                               source: torch.Tensor, target: torch.Tensor,
                               full_rows: int, length: int,
                               tail_length: int) -> torch.Tensor:
        grad_rows = torch.empty_like(rows)
        dot_rows = (grad_out_rows * out_rows).sum(dim=-1)
        for part, part_length in _parts(full_rows, source.numel(), length,
                                        tail_length):
            gather_attend_scatter_backward(rows, grad_out_rows, dot_rows,
                                           source[part], target[part],
                                           grad_rows, part_length)
        return grad_rows

    @_attention_backward_op.register_fake
    def _(grad_out_rows, rows, out_rows, source, target, full_rows, length,
          tail_length):
        return torch.empty_like(rows)

    def _setup_context(ctx, inputs, output):
        rows, source, target, full_rows, length, tail_length = inputs
        ctx.save_for_backward(rows, output, source, target)
        ctx.sizes = full_rows, length, tail_length

    def _backward(ctx, grad_out_rows):
        rows, out_rows, source, target = ctx.saved_tensors
        grad_rows = _attention_backward_op(grad_out_rows.contiguous(), rows,
                                           out_rows, source, target,
                                           *ctx.sizes)
        return grad_rows, None, None, None, None, None

    _attention_op.register_autograd(_backward, setup_context=_setup_context)

    #: The op whose output selective checkpointing keeps (see
    #: :mod:`~mmsecvit.models.layers.activation_checkpoint`).
    ATTENTION_OP = torch.ops.mmsecvit.short_cluster_attention.default
else:
    _attention_op = ATTENTION_OP = None


def short_cluster_attention(rows: torch.Tensor, source: torch.Tensor,
                            target: torch.Tensor, full_rows: int, length: int,
                            tail_length: int) -> torch.Tensor:
    """Attention within the clusters given by ``source``, as one op.

    Args:
        rows (Tensor): (R, 3 * head_dims), contiguous: q, k and v of one
            token and head per row.
        source (Tensor): A permutation of the R rows: the rows of the full
            clusters of ``length`` tokens, cluster after cluster, then
            those of the shorter last clusters of ``tail_length`` tokens.
        target (Tensor): A permutation of the R output rows: where the
            output of each row of ``source`` goes.
        full_rows (int): How many of ``source`` belong to full clusters.
        length, tail_length (int): Tokens per full and per last cluster.

    Returns:
        Tensor: (R, head_dims), the attention output at ``target``. Where a
        gradient is recorded, its backward is
        :func:`gather_attend_scatter_backward` (torch >= 2.4, which
        :func:`short_cluster_kernel_applies` checks).
    """
    if torch.is_grad_enabled() and rows.requires_grad:
        return _attention_op(rows, source, target, full_rows, length,
                             tail_length)
    return _attend_parts(rows, source, target, full_rows, length,
                         tail_length)
