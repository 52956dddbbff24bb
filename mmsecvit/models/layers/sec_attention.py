# Copyright (c) mmsecvit contributors. All rights reserved.
"""Semantic Equitable Clustering (SEC) attention.

SEC ranks the tokens of every head by the cosine similarity of their key to
the mean key of the image, cuts the ranking into equally long chunks and lets
each chunk attend only to itself. This module does that for any number of
tokens, in any dtype, with one sort per head, one gather of q, k and v
together, one batched ``scaled_dot_product_attention`` call for the full
clusters (plus one for a shorter last cluster, when the tokens do not divide)
and one scatter back.

When the token count is not a multiple of the cluster length, the last
cluster is shorter. That is the same as padding the sorted sequence with
masked tokens (no real token attends to a padded one) without computing the
padding; tests check the equivalence against an explicitly padded and masked
implementation.
"""
import math
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rope import apply_rope

CLUSTER_MODES = ('num_clusters', 'cluster_size')


def resolve_cluster_length(num_tokens: int, num_clusters: int,
                           cluster_mode: str, cluster_size: int) -> int:
    """Tokens per cluster for a map of ``num_tokens`` tokens.

    Args:
        num_tokens (int): Tokens of one image (H * W).
        num_clusters (int): Clusters of the block; ``-1`` (or any value
            below 2) means global attention in both modes.
        cluster_mode (str): ``'num_clusters'`` keeps the number of clusters
            fixed, as the paper does (cost grows quadratically with the
            tokens); ``'cluster_size'`` keeps ``cluster_size`` tokens per
            cluster (cost grows linearly).
        cluster_size (int): Tokens per cluster in ``'cluster_size'`` mode.

    Returns:
        int: The cluster length; ``num_tokens`` means global attention.
    """
    if num_clusters < 2:
        return num_tokens
    if cluster_mode == 'num_clusters':
        length = math.ceil(num_tokens / num_clusters)
    elif cluster_mode == 'cluster_size':
        length = cluster_size
    else:
        raise ValueError(f'Unknown cluster_mode {cluster_mode!r}; expected '
                         f'one of {CLUSTER_MODES}.')
    return min(length, num_tokens)


def sec_order(k: torch.Tensor) -> torch.Tensor:
    """Rank tokens by the cosine similarity of their key to the mean key.

    Args:
        k (Tensor): Keys of shape (B, heads, N, head_dims).

    Returns:
        Tensor: Indices of shape (B, heads, N), least similar first.
    """
    center = F.normalize(k.mean(dim=2, keepdim=True), dim=-1)  # (B, h, 1, d)
    similarity = F.normalize(k, dim=-1) @ center.transpose(-1, -2)
    return similarity.squeeze(-1).argsort(dim=-1)  # (B, h, N)


def clustered_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        cluster_length: int,
                        order: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Attention within SEC clusters.

    Args:
        q, k, v (Tensor): Shape (B, heads, N, head_dims), after RoPE.
        cluster_length (int): Tokens per cluster (the last may be shorter).
        order (Tensor, optional): Precomputed :func:`sec_order` of ``k``.

    Returns:
        Tensor: Shape (B, heads, N, head_dims), in token order.
    """
    b, h, n, d = q.shape
    if cluster_length >= n:
        return F.scaled_dot_product_attention(q, k, v)
    if order is None:
        order = sec_order(k)
    # One gather moves q, k and v into cluster order together.
    qkv = torch.stack([q, k, v], dim=3).flatten(3)  # (B, h, N, 3d)
    qkv = qkv.gather(2, order[..., None].expand(-1, -1, -1, 3 * d))

    num_full = n // cluster_length
    split = num_full * cluster_length
    full = qkv[:, :, :split].reshape(b, h * num_full, cluster_length, 3, d)
    out = F.scaled_dot_product_attention(
        full[..., 0, :], full[..., 1, :], full[..., 2, :])
    out = out.reshape(b, h, split, d)
    if split < n:
        rest = qkv[:, :, split:].unflatten(-1, (3, d))  # (B, h, N-split, 3, d)
        out_rest = F.scaled_dot_product_attention(
            rest[..., 0, :], rest[..., 1, :], rest[..., 2, :])
        out = torch.cat([out, out_rest], dim=2)
    # Back to token order: out_sorted[i] belongs to token order[i].
    return out.new_empty(b, h, n, d).scatter_(
        2, order[..., None].expand(-1, -1, -1, d), out)


def cluster_labels(order: torch.Tensor, cluster_length: int) -> torch.Tensor:
    """Cluster index of every token, shape (B, heads, N)."""
    n = order.shape[-1]
    ranks = torch.arange(n, device=order.device) // cluster_length
    return torch.empty_like(order).scatter_(-1, order, ranks.expand_as(order))


class SECAttention(nn.Module):
    """Multi-head attention within Semantic Equitable Clusters.

    Args:
        embed_dims (int): Channels of the input map.
        num_heads (int): Attention heads.
        num_clusters (int): Clusters per image; ``-1`` means global
            attention.
        cluster_mode (str): ``'num_clusters'`` (the paper's) or
            ``'cluster_size'``. See :func:`resolve_cluster_length`.
        cluster_size (int): Tokens per cluster in ``'cluster_size'`` mode.
            Defaults to 98, the length the released models use at 224x224.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_clusters: int,
                 cluster_mode: str = 'num_clusters',
                 cluster_size: int = 98) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads}).')
        if cluster_mode not in CLUSTER_MODES:
            raise ValueError(f'Unknown cluster_mode {cluster_mode!r}; '
                             f'expected one of {CLUSTER_MODES}.')
        if cluster_size < 1:
            raise ValueError(f'cluster_size must be >= 1, got {cluster_size}.')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_clusters = num_clusters
        self.cluster_mode = cluster_mode
        self.cluster_size = cluster_size
        self.qkv = nn.Conv2d(embed_dims, embed_dims * 3, 1)
        # Local enhancement of the values (LePE): a 5x5 depth-wise conv.
        self.lepe = nn.Conv2d(
            embed_dims, embed_dims, 5, padding=2, groups=embed_dims)
        self.out_proj = nn.Conv2d(embed_dims, embed_dims, 1)
        # A list while cluster assignments are being recorded, else None.
        self.cluster_records: Optional[list] = None

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, num_clusters='
                f'{self.num_clusters}, cluster_mode={self.cluster_mode}, '
                f'cluster_size={self.cluster_size}')

    def forward(self, x: torch.Tensor, sin: torch.Tensor,
                cos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (Tensor): Input map (B, C, H, W).
            sin, cos (Tensor): RoPE tables (H*W, head_dims).

        Returns:
            Tensor: Output map (B, C, H, W).
        """
        b, c, h, w = x.shape
        n, d = h * w, c // self.num_heads
        qkv = self.qkv(x)  # (B, 3C, H, W)
        lepe = self.lepe(qkv[:, 2 * c:])
        q, k, v = qkv.reshape(b, 3, self.num_heads, d, n).transpose(-1, -2) \
            .unbind(1)  # 3 x (B, heads, N, d)
        q = apply_rope(q, sin, cos)
        k = apply_rope(k, sin, cos)

        length = resolve_cluster_length(n, self.num_clusters,
                                        self.cluster_mode, self.cluster_size)
        order = sec_order(k) if length < n else None
        out = clustered_attention(q, k, v, length, order)
        if self.cluster_records is not None:
            self._record(order, length, (b, h, w))
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return self.out_proj(out + lepe)

    def _record(self, order: Optional[torch.Tensor], length: int,
                shape: tuple) -> None:
        b, h, w = shape
        if order is None:  # global attention: one cluster
            labels = torch.zeros(
                b, self.num_heads, h * w, dtype=torch.long)
        else:
            labels = cluster_labels(order, length).cpu()
        self.cluster_records.append(labels.reshape(b, self.num_heads, h, w))


@contextmanager
def record_cluster_assignments(
        model: nn.Module) -> Iterator[Dict[str, list]]:
    """Record the cluster index of every token in every SEC attention.

    Within the context, each forward of each :class:`SECAttention` of
    ``model`` appends a LongTensor of shape (B, heads, H, W) to the list
    stored under the module's name. These are the assignments the model
    really used (tokens of a global-attention block all get cluster 0).

    Examples:
        >>> import torch
        >>> from mmsecvit.models import SecViT
        >>> model = SecViT(arch=dict(
        ...     embed_dims=[32, 64, 128, 256], depths=[1, 1, 1, 1],
        ...     num_heads=[1, 2, 4, 8], num_clusters=[4, 2, 2, -1])).eval()
        >>> with record_cluster_assignments(model) as records:
        ...     _ = model(torch.rand(1, 3, 64, 64))
        >>> records['layers.0.blocks.0.attn'][0].shape
        torch.Size([1, 1, 16, 16])
    """
    attentions = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, SECAttention)
    }
    records: Dict[str, list] = {name: [] for name in attentions}
    for name, module in attentions.items():
        module.cluster_records = records[name]
    try:
        yield records
    finally:
        for module in attentions.values():
            module.cluster_records = None
