# Copyright (c) mmsecvit contributors. All rights reserved.
"""Selective activation checkpointing: keep what is costly to recompute.

Full activation checkpointing (``with_cp=True``) keeps only a block's input
and runs the whole block again in the backward pass. Selective
checkpointing keeps the outputs of the operations that carry most of the
block's FLOPs (the attention kernel: SDPA, or on the CPU for short
clusters the chunked kernel of
:mod:`~mmsecvit.models.layers.short_cluster_attention`; and the 1x1
convolutions that expand the channels: qkv and the FFN's first layer) and
the token ranking's sort
(small: a value and an index per token and head), and recomputes the rest:
layer norms, depth-wise convolutions, GELU, RoPE, the similarities the
ranking sorts, the clustering's gathers and scatters, and the attention's
output projection (a C-to-C 1x1
convolution, a tenth of the block's multiply-adds; no backward needs its
output, so keeping it only saved that recomputation, at C values per token
and block). The output of the FFN's second layer is not kept either: no
backward needs it, and the recomputation stops before reaching it. The
memory and time this costs are measured in docs/benchmark.md.

Recomputation runs the same operations on the same inputs, so the results
and gradients equal those without checkpointing. The blocks of SecViT hold
no BatchNorm, whose running statistics a second forward would update again.
"""
import torch

from mmsecvit.utils.errors import UnsupportedEnvironmentError
from .short_cluster_attention import ATTENTION_OP as SHORT_CLUSTER_ATTENTION_OP

try:  # torch >= 2.4
    from torch.utils.checkpoint import (CheckpointPolicy,
                                        create_selective_checkpoint_contexts)
except ImportError:  # an older torch: selective checkpointing is refused
    CheckpointPolicy = create_selective_checkpoint_contexts = None

_aten = torch.ops.aten
# Every fused SDPA kernel that PyTorch may pick (CPU, CUDA flash,
# memory-efficient, cuDNN). The math fallback decomposes into matmuls and a
# softmax, which are then recomputed.
_ATTENTION_OPS = {
    getattr(_aten, name).default
    for name in ('_scaled_dot_product_flash_attention_for_cpu',
                 '_scaled_dot_product_flash_attention',
                 '_scaled_dot_product_efficient_attention',
                 '_scaled_dot_product_cudnn_attention')
    if hasattr(_aten, name)
}
# The chunked CPU kernel for short clusters, an op of its own.
if SHORT_CLUSTER_ATTENTION_OP is not None:
    _ATTENTION_OPS.add(SHORT_CLUSTER_ATTENTION_OP)


def _is_saved_convolution(args) -> bool:
    """A dense 1x1 convolution that expands the channels (qkv, first FFN
    layer). The outputs of the others (output projection, second FFN layer)
    are needed by no backward, so keeping them would only cost memory."""
    weight, groups = args[1], args[8]
    out_channels, in_channels = weight.shape[:2]
    return (groups == 1 and tuple(weight.shape[2:]) == (1, 1)
            and out_channels > in_channels)


#: The sort behind the token ranking: its output (a value and an index per
#: token and head, a twentieth of a C-channel map for SecViT-S) is kept
#: rather than sorted again.
_SORT_OPS = {
    getattr(_aten.sort, name)
    for name in ('default', 'stable') if hasattr(_aten.sort, name)
}


def keep_attention_and_projections(ctx, op, *args, **kwargs):
    """Checkpoint policy: save the outputs of SDPA, of the 1x1 convolutions
    that expand the channels and of the ranking's sort; recompute
    everything else."""
    if op in _ATTENTION_OPS or op in _SORT_OPS:
        return CheckpointPolicy.MUST_SAVE
    if op is _aten.convolution.default and _is_saved_convolution(args):
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def check_selective_checkpoint_support() -> None:
    """Raise a clear error when this torch has no selective checkpointing.

    Raises:
        RuntimeError: torch older than 2.4.
    """
    if create_selective_checkpoint_contexts is None:
        raise UnsupportedEnvironmentError(
            "with_cp='selective' needs torch >= 2.4 (torch.utils.checkpoint."
            f'create_selective_checkpoint_contexts); this is torch '
            f'{torch.__version__}. Use with_cp=True (full checkpointing) or '
            'upgrade torch.')


def selective_checkpoint_context():
    """The ``context_fn`` of ``torch.utils.checkpoint.checkpoint`` for
    selective checkpointing with :func:`keep_attention_and_projections`."""
    check_selective_checkpoint_support()
    return create_selective_checkpoint_contexts(
        keep_attention_and_projections)
