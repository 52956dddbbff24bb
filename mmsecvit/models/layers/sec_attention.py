# Copyright (c) mmsecvit contributors. All rights reserved.
"""Semantic Equitable Clustering (SEC) attention.

SEC ranks the tokens of every head by the cosine similarity of their key to
the mean key of the image, cuts the ranking into equally long chunks and lets
each chunk attend only to itself. This module does that for any number of
tokens, in any dtype, with one sort per head, one row gather of q, k and v
together, one batched ``scaled_dot_product_attention`` call for the full
clusters (plus one for a shorter last cluster, when the tokens do not divide)
and one scatter back.

Layout, chosen for speed at dense-prediction resolutions: the backbone runs
channels-last, so the 1x1 ``qkv`` convolution already stores every token's
q, k and v next to each other; the attention works on that packed
(B, heads, N, 3, head_dims) tensor, applies RoPE to q and k in one pass and
scatters its result into a token-major buffer, which is again a channels-last
map without a further copy. SDPA gets 4-D inputs whose last dimension is
contiguous, which is what PyTorch's fused CPU kernel (and the flash /
memory-efficient GPU kernels) require; otherwise it falls back to the slow
math path.

When the token count is not a multiple of the cluster length, the last
cluster is shorter. That is the same as padding the sorted sequence with
masked tokens (no real token attends to a padded one) without computing the
padding; tests check the equivalence against an explicitly padded and masked
implementation.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsecvit.utils.errors import ConfigValueError
from .capture import capturing_graph
from .compile_workarounds import own_memory_when_compiling
from .conv_fusion import residual_conv_
from .cpu_fusion import conv2d, conv2d_add_, fusion_applies, has_module_hooks
from .depthwise_conv import depthwise_conv2d
from .param_cache import cached_derivation
from .rope import apply_rope
from .short_cluster_attention import (short_cluster_attention,
                                      short_cluster_kernel_applies)

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
        # Integer ceiling: exact for any size, and under torch.compile with
        # dynamic shapes it stays an integer expression of the symbolic
        # size (a float division would turn it into a float symbol).
        length = -(-num_tokens // num_clusters)
    elif cluster_mode == 'cluster_size':
        length = cluster_size
    else:
        raise ConfigValueError(
            f'Unknown cluster_mode {cluster_mode!r}; expected '
            f'one of {CLUSTER_MODES}.')
    return min(length, num_tokens)


def sec_order(k: torch.Tensor) -> torch.Tensor:
    """Rank tokens by the cosine similarity of their key to the mean key.

    The similarities are computed in float32 (float64 for float64 keys)
    with autocast off. The ranking decides which tokens attend to each
    other, so rounding errors here are not small errors of the output but
    tokens moved to another cluster: in bfloat16 or float16 arithmetic
    (the matrix product under autocast) neighbouring similarities round to
    the same value and their order becomes arbitrary. The keys themselves
    stay as given (in autocast's dtype they are already rounded, which is
    the part of the difference that cannot be avoided).

    Args:
        k (Tensor): Keys of shape (B, heads, N, head_dims); any strides.

    Returns:
        Tensor: Indices of shape (B, heads, N), least similar first.
    """
    # No gradient: the result is an index, and recording the graph would
    # keep the keys' similarities alive until the backward pass.
    with torch.autocast(k.device.type, enabled=False), torch.no_grad():
        k = k.to(torch.promote_types(k.dtype, torch.float32))
        center = F.normalize(
            k.mean(dim=2, keepdim=True), dim=-1)  # (B, h, 1, d)
        # Dividing the (B, h, N) dot products by the key norms gives the
        # cosine without writing a normalised copy of all keys.
        dots = (k @ center.transpose(-1, -2)).squeeze(-1)  # (B, h, N)
        similarity = dots / k.norm(dim=-1).clamp_min(1e-12)
        return similarity.argsort(dim=-1)


def rope_qk(qkv: torch.Tensor, sin: torch.Tensor,
            cos: torch.Tensor) -> torch.Tensor:
    """Apply RoPE to q and k of a packed tensor.

    In float32 and float64 every (even, odd) channel pair of q, k and v is
    multiplied, as one complex number, by ``cos + i sin`` for q and k and
    by ``1`` for v: the products and sums of
    :func:`~mmsecvit.models.layers.rope.apply_rope` and the copy of v in a
    single pass, which writes its result in the memory order of ``qkv``
    (no further copy). The products may round the last bit differently from
    ``apply_rope``; v comes out unchanged (``a * 1 - b * 0 == a`` for every
    finite value). Other dtypes (bf16 and fp16 under autocast, which have
    no complex counterpart on every device) take ``apply_rope`` and a
    concatenation, and so does a graph being compiled: Inductor generates
    no code for complex operators and falls back to eager kernels there.

    The tables are cast to the dtype of ``qkv`` first, so that q, k and v
    reach the attention kernel in that dtype: under autocast the float32
    tables would otherwise promote q and k (and, through the
    concatenation, v) to float32, and autocast would cast them back to
    its dtype for ``scaled_dot_product_attention``, two extra copies of
    every q, k and v per block.

    Args:
        qkv (Tensor): Shape (B, heads, N, 3, head_dims); the last dimension
            contiguous.
        sin, cos (Tensor): RoPE tables (N, head_dims), in any floating
            dtype.

    Returns:
        Tensor: (B, heads, N, 3, head_dims), q and k rotated, v copied; in
        the memory order of ``qkv`` where the complex path is taken, else
        contiguous.
    """
    sin, cos = sin.to(qkv.dtype), cos.to(qkv.dtype)
    if _complex_rope_applies(qkv):
        rotation = _rotation(sin, cos)  # (N, d/2)
        table = torch.stack(
            [rotation, rotation, torch.ones_like(rotation)], dim=1)
        pairs = torch.view_as_complex(qkv.unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * table).flatten(-2)
    rotated = apply_rope(qkv[..., :2, :], sin[:, None], cos[:, None])
    return torch.cat([rotated, qkv[..., 2:, :]], dim=-2)


def rope_qk_(qkv: torch.Tensor, sin: torch.Tensor,
             cos: torch.Tensor) -> torch.Tensor:
    """:func:`rope_qk` in place, for inference: q and k of ``qkv`` are
    rotated where they are, v is not touched (no copy of v, no new tensor).

    The rotation is the same complex product as in :func:`rope_qk` (a
    strided kernel may round the last bit differently). Where that product
    is not taken (other dtypes, export, compilation) or a gradient is
    recorded, this returns :func:`rope_qk` instead and leaves ``qkv``
    unchanged.

    Args:
        qkv (Tensor): Shape (B, heads, N, 3, head_dims); the last dimension
            contiguous. Overwritten in place.
        sin, cos (Tensor): RoPE tables (N, head_dims).

    Returns:
        Tensor: ``qkv`` with q and k rotated.
    """
    if torch.is_grad_enabled() or not _complex_rope_applies(qkv):
        return rope_qk(qkv, sin, cos)
    rotation = _rotation(sin.to(qkv.dtype), cos.to(qkv.dtype))
    pairs = torch.view_as_complex(qkv[..., :2, :].unflatten(-1, (-1, 2)))
    pairs.mul_(rotation[:, None])  # (B, heads, N, 2, d/2) by (N, 1, d/2)
    return qkv


class _RopeQKWithValues(torch.autograd.Function):
    """:func:`rope_qk` that also returns a token-major copy of v, with a
    backward that adds v's gradient into the rotation's gradient in place.

    Used in training, where LePE reads v and the attention reads the
    rotated tensor. Taking v from ``qkv`` by indexing would give it a
    backward that writes v's gradient into a zero-filled full-size tensor,
    which autograd then adds to the rotation's gradient: three passes over
    the packed tensor per block, against one third of a pass here.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, sin: torch.Tensor,
                cos: torch.Tensor) -> tuple:
        ctx.save_for_backward(sin, cos)
        ctx.set_materialize_grads(False)
        ctx.qkv_shape = qkv.shape
        rotated = rope_qk(qkv, sin, cos)
        # (B, N, heads, d), contiguous: a channels-last map of v.
        values = rotated[..., 2, :].transpose(1, 2).contiguous()
        return rotated, values

    @staticmethod
    def backward(ctx, grad_rotated: Optional[torch.Tensor],
                 grad_values: Optional[torch.Tensor]) -> tuple:
        sin, cos = ctx.saved_tensors
        if grad_rotated is None and grad_values is None:
            return None, None, None
        if grad_rotated is None:
            grad = grad_values.new_zeros(ctx.qkv_shape)
        else:
            # The rotation's transpose is the rotation by minus the angle;
            # v passes through (rotated by 0). A new tensor: written below.
            if grad_rotated.stride(-1) != 1:  # e.g. expanded
                grad_rotated = grad_rotated.contiguous()
            grad = rope_qk(grad_rotated, -sin, cos)
        if grad_values is not None:
            grad[..., 2, :] += grad_values.transpose(1, 2)
        return grad, None, None


def rope_qk_with_values(qkv: torch.Tensor, sin: torch.Tensor,
                        cos: torch.Tensor) -> tuple:
    """:func:`rope_qk` and a copy of v laid out (B, N, heads, head_dims).

    Where a gradient is recorded (and no graph is being captured), v's
    gradient is added to that of the rotated tensor in place (see
    :class:`_RopeQKWithValues`); elsewhere this is :func:`rope_qk` and a
    copy of its v.

    Args:
        qkv (Tensor): Shape (B, heads, N, 3, head_dims); the last dimension
            contiguous.
        sin, cos (Tensor): RoPE tables (N, head_dims).

    Returns:
        tuple[Tensor, Tensor]: The output of :func:`rope_qk`, and v of
        shape (B, N, heads, head_dims), contiguous (a channels-last map
        once viewed as (B, H, W, C) and permuted).
    """
    if (torch.is_grad_enabled() and qkv.requires_grad
            and not (sin.requires_grad or cos.requires_grad)
            and not capturing_graph()):
        return _RopeQKWithValues.apply(qkv, sin, cos)
    rotated = rope_qk(qkv, sin, cos)
    return rotated, rotated[..., 2, :].transpose(1, 2).contiguous()


def _complex_rope_applies(qkv: torch.Tensor) -> bool:
    # ONNX has no complex type, and Inductor generates no code for complex
    # operators: an export or a graph being compiled takes the real path.
    return (qkv.dtype in (torch.float32, torch.float64)
            and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling())


def _rotation(sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """``cos + i sin`` per channel pair, (N, head_dims / 2): both channels
    of a pair share one angle (RoPE2d repeats each)."""
    return torch.complex(cos[:, 0::2], sin[:, 0::2])


def _row_index(order: torch.Tensor, token_major: bool) -> torch.Tensor:
    """Row of every ranked token in a (B, heads, N, row) tensor flattened
    to rows: laid out (B, N, heads) if ``token_major``, else (B, heads,
    N)."""
    b, h, n = order.shape
    index = torch.arange(max(b, h), device=order.device)
    if token_major:
        return (order + index[:b, None, None] * n) * h + index[None, :h, None]
    return order + (index[:b, None] * h + index[None, :h]).unsqueeze(-1) * n


class _PermuteRows(torch.autograd.Function):
    """``rows[index]`` for an ``index`` that is a permutation of the rows,
    whose backward is the gather by the inverse permutation (autograd's
    backward of ``index_select`` zero-fills a gradient and accumulates
    into it, several times slower on the CPU)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, index: torch.Tensor,
                inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, inverse)
        return rows.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        index, inverse = ctx.saved_tensors
        # Differentiable, so higher-order gradients work too.
        return permute_rows(grad, inverse, index), None, None


def permute_rows(rows: torch.Tensor,
                 index: torch.Tensor,
                 inverse: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``rows.index_select(0, index)`` for a permutation ``index`` of all
    rows of ``rows``.

    Args:
        rows (Tensor): Any tensor; its first dimension is permuted.
        index (Tensor): A permutation of ``range(len(rows))`` (not checked:
            a repeated or missing row gives wrong gradients).
        inverse (Tensor, optional): The inverse permutation, computed from
            ``index`` when needed and not given.

    Returns:
        Tensor: ``rows[index]``; with a backward that gathers (see
        :class:`_PermuteRows`) where a gradient is recorded and no graph is
        being captured (a compiler finds its own backward).
    """
    if not (torch.is_grad_enabled() and rows.requires_grad
            and not capturing_graph()):
        return rows.index_select(0, index)
    if inverse is None:
        inverse = torch.empty_like(index)
        inverse[index] = torch.arange(
            index.numel(), device=index.device, dtype=index.dtype)
    return _PermuteRows.apply(rows, index, inverse)


def clustered_attention_packed(qkv: torch.Tensor,
                               cluster_length: int,
                               order: Optional[torch.Tensor] = None
                               ) -> torch.Tensor:
    """Attention within SEC clusters on a packed q, k, v tensor.

    Args:
        qkv (Tensor): Shape (B, heads, N, 3, head_dims), q and k after
            RoPE. Fastest when its memory is (B, N, heads, 3, head_dims) or
            (B, heads, N, 3, head_dims) in order, so that the 3 * head_dims
            values of a token and head form one row; other layouts are
            copied into the latter first.
        cluster_length (int): Tokens per cluster (the last may be shorter);
            ``>= N`` means global attention.
        order (Tensor, optional): Precomputed :func:`sec_order` of the keys.

    Returns:
        Tensor: Shape (B, heads, N, head_dims), in token order. Its memory
        is token-major where possible, so ``out.transpose(1, 2).reshape(B,
        N, C)`` needs no copy.
    """
    b, h, n, _, d = qkv.shape
    if cluster_length >= n:
        return F.scaled_dot_product_attention(*qkv.unbind(3))
    if order is None:
        order = sec_order(qkv[..., 1, :])
    token_major = qkv.transpose(1, 2).is_contiguous()
    if not (token_major or qkv.is_contiguous()):
        qkv = qkv.contiguous()
    rows = qkv.transpose(1, 2) if token_major else qkv
    rows = rows.reshape(-1, 3 * d)  # a view
    source = _row_index(order, token_major)
    target = source if token_major else _row_index(order, token_major=True)

    # The tokens of full clusters first, those of the shorter last cluster
    # (if any) after them.
    num_full = n // cluster_length
    split = num_full * cluster_length
    parts = [(source[..., :split], target[..., :split], cluster_length)]
    if split < n:
        parts.append((source[..., split:], target[..., split:], n - split))

    # Rows of ``rows`` in cluster order, all parts together.
    source_rows = torch.cat([part[0].flatten() for part in parts])

    if short_cluster_kernel_applies(qkv, cluster_length):
        target_rows = source_rows if token_major else torch.cat(
            [part[1].flatten() for part in parts])
        out = short_cluster_attention(rows, source_rows, target_rows,
                                      parts[0][0].numel(), cluster_length,
                                      n - split)
        return out.view(b, n, h, d).transpose(1, 2)

    # One gather moves q, k and v into cluster order together, copying
    # whole rows (``gather`` would index every value). Each part comes out
    # as a contiguous (B, clusters, L, 3d) tensor for SDPA.
    packed = permute_rows(rows, source_rows)
    # ``split`` and ``unbind`` (not slicing and indexing): their backward
    # writes the gradients of the parts, and of q, k and v, into one new
    # tensor, where slices would each get a zero-filled full-size gradient
    # to be summed.
    chunks = packed.split([part[0].numel() for part in parts])
    restored = None
    for chunk, (_, target_rows, length) in zip(chunks, parts):
        q, k, v = chunk.view(b, -1, length, 3, d).unbind(3)
        out = F.scaled_dot_product_attention(q, k, v)
        if restored is None:  # in SDPA's output dtype (autocast may cast)
            restored = out.new_empty(b, n, h, d)
        # Back to token order, row by row into the token-major buffer.
        restored.view(b * n * h, d).index_copy_(0, target_rows.flatten(),
                                                out.reshape(-1, d))
    return restored.transpose(1, 2)


def clustered_attention_traceable(qkv: torch.Tensor, num_clusters: int,
                                  cluster_mode: str,
                                  cluster_size: int) -> torch.Tensor:
    """:func:`clustered_attention_packed` without a branch on the token
    count, for export to a graph with a dynamic input size.

    The eager path picks the cluster length, and whether a shorter last
    cluster exists, from Python integers; a traced graph would freeze them
    at the export size. Here they are computed from the shape inside the
    graph and the sorted tokens are padded to whole clusters instead: the
    padding repeats the first tokens of the ranking, is masked out as keys
    and dropped from the output, which is the same attention as a shorter
    last cluster (see the module docstring). At a token count that
    ``cluster_size`` mode does not cluster (``N <= cluster_size``), the one
    cluster holds all tokens in ranked order, which equals global attention
    up to rounding.

    Args:
        qkv (Tensor): Shape (B, heads, N, 3, head_dims), q and k after
            RoPE.
        num_clusters (int): Clusters of the block; below 2 is global
            attention.
        cluster_mode (str): See :func:`resolve_cluster_length`.
        cluster_size (int): See :func:`resolve_cluster_length`.

    Returns:
        Tensor: Shape (B, heads, N, head_dims), in token order.
    """
    q, k, v = qkv.unbind(3)
    if num_clusters < 2:
        return F.scaled_dot_product_attention(q, k, v)
    b, heads, n, d = k.shape
    if not isinstance(n, torch.Tensor):  # sizes are tensors while tracing
        n = torch.tensor(n, device=qkv.device)
    if cluster_mode == 'num_clusters':
        length = (n + num_clusters - 1) // num_clusters
    elif cluster_mode == 'cluster_size':
        length = n.clamp(max=cluster_size)
    else:
        raise ValueError(f'Unknown cluster_mode {cluster_mode!r}; expected '
                         f'one of {CLUSTER_MODES}.')
    clusters = (n + length - 1) // length
    order = sec_order(k)  # (B, heads, N)
    padded = torch.cat([order, order[..., :clusters * length - n]], dim=-1)
    rows = torch.gather(qkv, 2, padded[..., None, None].expand(
        -1, -1, -1, 3, d))  # (B, heads, clusters * L, 3, d)
    rows = rows.reshape(b, heads, clusters, length, 3, d)
    valid = torch.arange(clusters * length, device=qkv.device) < n
    out = F.scaled_dot_product_attention(
        rows[..., 0, :],
        rows[..., 1, :],
        rows[..., 2, :],
        attn_mask=valid.reshape(clusters, 1, length))
    out = out.reshape(b, heads, clusters * length, d)[:, :, :n]
    # Back to token order.
    index = order[..., None].expand(-1, -1, -1, d)
    return torch.zeros_like(v).scatter(2, index, out)


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
    return clustered_attention_packed(
        torch.stack([q, k, v], dim=3), cluster_length, order)


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
            raise ConfigValueError(
                f'embed_dims ({embed_dims}) must be divisible '
                f'by num_heads ({num_heads}).')
        if cluster_mode not in CLUSTER_MODES:
            raise ConfigValueError(f'Unknown cluster_mode {cluster_mode!r}; '
                                   f'expected one of {CLUSTER_MODES}.')
        if cluster_size < 1:
            raise ConfigValueError(
                f'cluster_size must be >= 1, got {cluster_size}.')
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
        # The ranking to use instead of this module's own, within
        # :func:`forced_cluster_orders`; else None.
        self.forced_order: Optional[torch.Tensor] = None

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, num_clusters='
                f'{self.num_clusters}, cluster_mode={self.cluster_mode}, '
                f'cluster_size={self.cluster_size}')

    def forward(self,
                x: torch.Tensor,
                sin: torch.Tensor,
                cos: torch.Tensor,
                identity: Optional[torch.Tensor] = None,
                scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): Input map (B, C, H, W).
            sin, cos (Tensor): RoPE tables (H*W, head_dims).
            identity, scale (Tensor, optional): If ``identity`` is given,
                ``identity + scale * attn(x)``; see
                :func:`~mmsecvit.models.layers.conv_fusion.residual_conv_`.

        Returns:
            Tensor: Output map (B, C, H, W), or the sum described above.
        """
        b, c, h, w = x.shape
        n, d = h * w, c // self.num_heads
        # Output channels ordered (heads, 3, d): on a channels-last map the
        # q, k and v of a token and head are then one row of memory, which
        # RoPE keeps and the clustering gathers as a whole.
        # Channels-last (a no-op unless a hook's function or an NCHW input
        # changed the layout): then the rows below are views.
        qkv = self._qkv_by_head(x).contiguous(
            memory_format=torch.channels_last)
        # (B, N, heads, 3, d); a view when qkv is channels-last.
        tokens = qkv.permute(0, 2, 3, 1).reshape(b, n, self.num_heads, 3, d)
        if torch.is_grad_enabled():
            # (B, heads, N, 3, d), and v for LePE taken from it, so that
            # v's gradient is added to the rotation's in one place.
            qkv, v = rope_qk_with_values(tokens.transpose(1, 2), sin, cos)
            # LePE's convolution keeps its input for the weight gradient.
            v = own_memory_when_compiling(
                v.view(b, h, w, c).permute(0, 3, 1, 2))
        else:
            v = tokens[..., 2, :].reshape(b, h, w, c).permute(0, 3, 1, 2)
            # q and k rotated in place; v, read by LePE, is not touched.
            qkv = rope_qk_(tokens.transpose(1, 2), sin, cos)
        # A LePE module with hooks is called as a module. With the fusion,
        # LePE is added to the attention's output by the LePE convolution
        # itself, below.
        fused = fusion_applies(x) and not has_module_hooks(self.lepe)
        lepe = None if fused else depthwise_conv2d(self.lepe, v)

        if torch.onnx.is_in_onnx_export():
            # No cluster records: a graph has no Python side effects.
            out = clustered_attention_traceable(qkv, self.num_clusters,
                                                self.cluster_mode,
                                                self.cluster_size)
        else:
            length = resolve_cluster_length(n, self.num_clusters,
                                            self.cluster_mode,
                                            self.cluster_size)
            order = None
            if length < n:
                order = self._forced_order((b, self.num_heads, n))
                if order is None:
                    order = sec_order(qkv[..., 1, :])
            out = clustered_attention_packed(qkv, length, order)
            if self.cluster_records is not None:
                self._record(order, length, (b, h, w))
        # (B, heads, N, d) -> channels-last (B, C, H, W); free when ``out``
        # is token-major in memory.
        out = out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
        if fused:
            # ``out`` is a new tensor of this call: summed into in place.
            out = conv2d_add_(out, v, self.lepe.weight, self.lepe.bias,
                              padding=self.lepe.padding,
                              groups=self.lepe.groups,
                              module=self.lepe)
        else:
            out = out + lepe
        if identity is None:
            return self.out_proj(out)
        return residual_conv_(identity, self.out_proj, out, scale)

    def _forced_order(self, shape: tuple) -> Optional[torch.Tensor]:
        """The ranking set by :func:`forced_cluster_orders`, if any, after
        checking that it ranks this input's tokens."""
        order = self.forced_order
        if order is not None and tuple(order.shape) != shape:
            raise ValueError(
                f'The forced cluster order has shape {tuple(order.shape)}, '
                f'but this input needs (batch, heads, tokens) = {shape}: '
                f'give each SEC attention the ranking of the input it gets.')
        return order

    def _qkv_by_head(self, x: torch.Tensor) -> torch.Tensor:
        """``qkv(x)`` with the output channels ordered (heads, 3, d): by the
        reordered weights, or, where ``qkv`` has hooks, reordered after the
        module's own call (the hooks see its output; it is not written to
        afterwards)."""
        if not has_module_hooks(self.qkv):
            return conv2d(x, *self._qkv_weights_by_head(), module=self.qkv)
        qkv = self.qkv(x)
        b, _, h, w = qkv.shape
        # Always a copy (RoPE rotates it in place), in channels-last memory:
        # (B, H, W, heads, 3, d).
        tokens = qkv.permute(0, 2, 3, 1).unflatten(
            3, (3, self.num_heads, -1)).transpose(3, 4).clone(
                memory_format=torch.contiguous_format)
        return tokens.view(b, h, w, -1).permute(0, 3, 1, 2)

    def _qkv_weights_by_head(self) -> tuple:
        """Weight and bias of ``qkv`` with the output channels reordered from
        (3, heads, d), as the checkpoints store them, to (heads, 3, d);
        computed once for inference (see
        :func:`~mmsecvit.models.layers.param_cache.cached_derivation`)."""
        return cached_derivation(self, 'qkv_by_head', self._reorder_qkv,
                                 (self.qkv.weight, self.qkv.bias))

    def _reorder_qkv(self) -> tuple:
        shape = (3, self.num_heads, self.embed_dims // self.num_heads)
        weight = self.qkv.weight.unflatten(0, shape).transpose(0, 1)
        bias = self.qkv.bias
        if bias is not None:
            bias = bias.unflatten(0, shape).transpose(0, 1).flatten(0, 2)
        return weight.flatten(0, 2), bias

    def _record(self, order: Optional[torch.Tensor], length: int,
                shape: tuple) -> None:
        b, h, w = shape
        if order is None:  # global attention: one cluster
            labels = torch.zeros(
                b, self.num_heads, h * w, dtype=torch.long)
        else:
            labels = cluster_labels(order, length).cpu()
        self.cluster_records.append(labels.reshape(b, self.num_heads, h, w))


def sec_attention_modules(model: nn.Module) -> Dict[str, SECAttention]:
    """The :class:`SECAttention` modules of ``model`` by their names in
    ``model.named_modules()``, in that order."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, SECAttention)
    }


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
    attentions = sec_attention_modules(model)
    records: Dict[str, list] = {name: [] for name in attentions}
    for name, module in attentions.items():
        module.cluster_records = records[name]
    try:
        yield records
    finally:
        for module in attentions.values():
            module.cluster_records = None


@contextmanager
def forced_cluster_orders(model: nn.Module,
                          orders: Dict[str, torch.Tensor]) -> Iterator[None]:
    """Make the :class:`SECAttention` modules of ``model`` named in
    ``orders`` cluster by the given ranking instead of their own.

    Used to compare a model with another implementation of it (e.g. an
    ONNX Runtime session) given the same clusters: where two correct
    implementations round a near-tie differently, their own rankings put a
    token into different clusters. A module that does not cluster at its
    input size (global attention) ignores its entry.

    Args:
        model (nn.Module): A model holding SEC attention modules.
        orders (dict[str, Tensor]): Module name (as in
            ``model.named_modules()``) to a ranking of shape (B, heads, N),
            as :func:`sec_order` returns it, for the next forward's input.

    Raises:
        KeyError: A name in ``orders`` is no SEC attention of ``model``.
    """
    attentions = sec_attention_modules(model)
    unknown = sorted(set(orders) - set(attentions))
    if unknown:
        raise KeyError(f'No SECAttention named {unknown} in the model.')
    try:
        for name, order in orders.items():
            attentions[name].forced_order = order
        yield
    finally:
        for name in orders:
            attentions[name].forced_order = None
