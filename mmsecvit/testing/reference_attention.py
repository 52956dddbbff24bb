# Copyright (c) mmsecvit contributors. All rights reserved.
"""A plainly written SEC attention, the yardstick for the fast one.

The paper's math step by step: rank the tokens, gather q, k and v one by
one, pad the sorted sequence to whole clusters, compute ``softmax(q k^T /
sqrt(d))`` explicitly for every cluster in a 5-D (B, heads, clusters, L, L)
layout with padded keys masked, multiply by v and restore the token order
through the inverse permutation. It is deliberately not in the model: the
benchmark swaps it in with :func:`use_reference_attention` to measure what
the fast path gains, :func:`compare_with_reference_attention` measures how
far the two paths differ, and the tests check that both give the same
outputs.
"""
import math
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

import torch
import torch.nn.functional as F

from mmsecvit.models.layers import sec_attention


def reference_sec_order(k: torch.Tensor) -> torch.Tensor:
    """Tokens ranked by the cosine of their key with the mean key, (B, h,
    N), computed as the paper writes it."""
    center = F.normalize(k.mean(dim=2, keepdim=True), dim=-1)
    similarity = F.normalize(k, dim=-1) @ center.transpose(-1, -2)
    return similarity.squeeze(-1).argsort(dim=-1)


def reference_clustered_attention(q: torch.Tensor,
                                  k: torch.Tensor,
                                  v: torch.Tensor,
                                  cluster_length: int,
                                  order: Optional[torch.Tensor] = None
                                  ) -> torch.Tensor:
    """SEC attention written out plainly.

    Args:
        q, k, v (Tensor): Shape (B, heads, N, head_dims), after RoPE.
        cluster_length (int): Tokens per cluster; ``>= N`` means global
            attention.
        order (Tensor, optional): The token ranking to use; computed with
            :func:`reference_sec_order` when None.

    Returns:
        Tensor: Shape (B, heads, N, head_dims), in token order.
    """
    b, h, n, d = q.shape
    scale = d**-0.5
    if cluster_length >= n:
        attn = (q @ k.transpose(-1, -2) * scale).softmax(dim=-1)
        return attn @ v
    if order is None:
        order = reference_sec_order(k)
    index = order[..., None].expand(-1, -1, -1, d)
    q_sorted = q.gather(2, index)
    k_sorted = k.gather(2, index)
    v_sorted = v.gather(2, index)

    num_clusters = math.ceil(n / cluster_length)
    padded = num_clusters * cluster_length
    shape = (b, h, num_clusters, cluster_length, d)
    q_sorted = F.pad(q_sorted, (0, 0, 0, padded - n)).reshape(shape)
    k_sorted = F.pad(k_sorted, (0, 0, 0, padded - n)).reshape(shape)
    v_sorted = F.pad(v_sorted, (0, 0, 0, padded - n)).reshape(shape)

    attn = q_sorted @ k_sorted.transpose(-1, -2) * scale  # (B,h,c,L,L)
    if padded > n:
        is_padding = (torch.arange(padded, device=q.device) >= n).reshape(
            num_clusters, 1, cluster_length)
        attn = attn.masked_fill(is_padding, float('-inf'))
    attn = attn.softmax(dim=-1)
    out = (attn @ v_sorted).reshape(b, h, padded, d)[:, :, :n]
    restore = order.argsort(dim=-1)
    return out.gather(2, restore[..., None].expand(-1, -1, -1, d))


def reference_clustered_attention_packed(
        qkv: torch.Tensor,
        cluster_length: int,
        order: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`reference_clustered_attention` behind the signature of
    :func:`~mmsecvit.models.layers.sec_attention.clustered_attention_packed`.

    Args:
        qkv (Tensor): Shape (B, heads, N, 3, head_dims), q and k after RoPE.
        cluster_length (int): Tokens per cluster; ``>= N`` means global
            attention.
        order (Tensor, optional): The token ranking to use.

    Returns:
        Tensor: Shape (B, heads, N, head_dims), in token order.
    """
    q, k, v = qkv.unbind(dim=3)
    return reference_clustered_attention(q, k, v, cluster_length, order)


@contextmanager
def _attention_replaced_by(attention: Callable) -> Iterator[None]:
    """Run every :class:`SECAttention` through ``attention`` (with the
    signature of ``clustered_attention_packed``) within the context. The
    only place that swaps the model's attention."""
    fast = sec_attention.clustered_attention_packed
    sec_attention.clustered_attention_packed = attention
    try:
        yield
    finally:
        sec_attention.clustered_attention_packed = fast


def use_reference_attention():
    """Run every :class:`SECAttention` through
    :func:`reference_clustered_attention` within the context.

    The token ranking the model computes is handed over unchanged, so that
    both paths cluster identically and only the attention differs.

    Examples:
        >>> with use_reference_attention():
        ...     outs = model(x)  # doctest: +SKIP
    """
    return _attention_replaced_by(reference_clustered_attention_packed)


@contextmanager
def compare_with_reference_attention() -> Iterator[List[float]]:
    """Run the reference and the fast attention side by side in every
    :class:`SECAttention` within the context, both fed the same q, k, v and
    token ranking; the reference's output goes on through the model.

    Yields:
        list[float]: Filled with the largest absolute difference between the
        two outputs, one entry per attention call.
    """
    fast = sec_attention.clustered_attention_packed
    diffs: List[float] = []

    def both(qkv, cluster_length, order=None):
        out = reference_clustered_attention_packed(qkv, cluster_length, order)
        diffs.append(
            float((out - fast(qkv, cluster_length, order)).abs().max()))
        return out

    with _attention_replaced_by(both):
        yield diffs
