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
two SDPA backends. Where a gradient is recorded the fused kernel stays:
its backward needs no stored scores.
"""
from contextlib import contextmanager
from typing import Iterator

import torch

from .capture import capturing_graph

#: Clusters longer than this take the fused kernel. Measured with 2
#: threads (q, k and v of 4 heads, 4096 tokens, gather and scatter
#: included, two runs): 0.55-0.85x the fused kernel's time at 98, 128 and
#: 160 tokens, 0.8-0.95x at 192, and equal at 256.
MAX_CLUSTER_LENGTH = 192

#: Target size in bytes of a chunk's score buffer (clusters x L x L); the
#: gathered q, k and v of a chunk take about as much. 1-2 MiB were the
#: fastest of 0.5-4 MiB for SecViT-S's stages at 512x512 and 800x1333.
CHUNK_BYTES = 2 << 20

_enabled = True


@contextmanager
def short_cluster_kernel(enabled: bool) -> Iterator[None]:
    """Allow (``True``, the default outside this context) or forbid
    :func:`gather_attend_scatter` within the context; forbidden, every
    cluster takes ``scaled_dot_product_attention``.

    Examples:
        >>> with short_cluster_kernel(False):
        ...     outs = model(images)  # the fused SDPA kernel throughout
    """
    global _enabled
    previous = _enabled
    _enabled = enabled
    try:
        yield
    finally:
        _enabled = previous


def short_cluster_kernel_applies(qkv: torch.Tensor, length: int) -> bool:
    """Whether :func:`gather_attend_scatter` runs for clusters of
    ``length`` tokens: a float32 or float64 CPU tensor that records no
    gradient, CPU autocast off, no graph captured, clusters of at most
    :data:`MAX_CLUSTER_LENGTH` tokens, and not switched off by
    :func:`short_cluster_kernel`."""
    return (_enabled and qkv.device.type == 'cpu'
            and qkv.dtype in (torch.float32, torch.float64)
            and length <= MAX_CLUSTER_LENGTH
            and not (torch.is_grad_enabled() and qkv.requires_grad)
            and not torch.is_autocast_enabled('cpu')
            and not capturing_graph())


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
    clusters = source.numel() // length
    row_bytes = length * length * rows.element_size()
    chunk = max(1, min(clusters, CHUNK_BYTES // row_bytes))
    gathered = rows.new_empty(chunk * length, 3 * d)
    scores = rows.new_empty(chunk, length, length)
    out = rows.new_empty(chunk * length, d)
    scale = d**-0.5
    for start in range(0, clusters, chunk):
        num = min(chunk, clusters - start)
        index = slice(start * length, (start + num) * length)
        buf = gathered[:num * length]
        torch.index_select(rows, 0, source[index], out=buf)
        qkv = buf.view(num, length, 3, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        s = scores[:num]
        torch.baddbmm(s, q, k.transpose(1, 2), beta=0, alpha=scale, out=s)
        torch.softmax(s, dim=-1, out=s)
        o = out[:num * length]
        torch.bmm(s, v, out=o.view(num, length, d))
        out_rows.index_copy_(0, target[index], o)
