# Copyright (c) mmsecvit contributors. All rights reserved.
"""Inference cache for tensors derived from parameters.

Several layers run a convolution with parameters computed from their own
(a qkv weight with its output channels reordered, a BatchNorm folded into
the preceding convolution, a kernel plus the identity). In training these
must be recomputed in every forward pass, so that gradients reach the
parameters. In inference they only change when the parameters do, yet
recomputing them costs a copy of the weight per layer and call: about 7% of
SecViT-S's latency at 224x224 and 512x512 on a 2-core CPU (see
docs/benchmark.md).

:func:`cached_derivation` keeps the derived tensors of a module while its
sources are unchanged. A source counts as unchanged while it is the same
storage (kept alive by the cache, so its address cannot be reused), at the
same offset, shape, strides, dtype and device, with the same version
counter (bumped by in-place writes: ``load_state_dict``, ``copy_``,
in-place initialisers, most optimizer steps), and while no optimizer has
stepped since (fused optimizers do not bump the version counters; a global
step hook counts steps), and while the pass is in the same mode as the
one that derived them (within ``torch.inference_mode`` or not). Anything
else recomputes, and putting
:class:`~mmsecvit.models.SecViT` back into training mode drops its caches.

Writes through ``.data`` bypass the version counter. MMEngine's EMAHook
swaps weights that way, always around validation or testing epochs that
start from a training epoch or from the same swap, which these rules keep
correct. Code that writes weights through ``.data`` between two inference
passes, without ``model.train()`` in between, must call
:func:`clear_derived_params`.
"""
from typing import Callable, Dict, Hashable, Sequence, Tuple

import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .capture import capturing_graph

_CACHE_ATTR = '_derived_param_cache'
# Optimizer steps taken in this process (any optimizer).
_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


class _DerivedCache(dict):
    """The per-module cache: not copied by ``copy.deepcopy`` (EMA models,
    model copies) and not pickled (``torch.save(model)``); a copy starts
    empty and derives again on its first inference pass."""

    def __deepcopy__(self, memo) -> '_DerivedCache':
        return _DerivedCache()

    def __reduce__(self) -> tuple:
        return _DerivedCache, ()


def _signature(tensor: torch.Tensor) -> tuple:
    # A tensor made under ``torch.inference_mode`` (e.g. a derived weight
    # that is the source of another derivation) has no version counter;
    # it counts as unchanged while it is the same storage. Derived tensors
    # are never written in place, and outside inference mode an inference
    # tensor cannot be.
    version = None if tensor.is_inference() else tensor._version
    return (tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tensor.stride(), tensor.dtype, tensor.device, version)


def cached_derivation(module: nn.Module,
                      name: str,
                      compute: Callable[[], Tuple[torch.Tensor, ...]],
                      sources: Sequence[torch.Tensor],
                      extra: Hashable = None) -> tuple:
    """``compute()``, cached on ``module`` under ``name`` for inference.

    The cache is used only where no gradient can reach ``sources`` (no
    source requires a gradient, or gradients are disabled) and no graph is
    being recorded (tracing, ONNX export, ``torch.compile``); otherwise
    ``compute()`` runs every time and nothing is stored.

    Args:
        module (nn.Module): The module that owns the derived tensors.
        name (str): Key of this derivation within ``module``.
        compute (callable): Returns the derived tensors as a tuple.
        sources (Sequence[Tensor]): Every tensor ``compute`` reads
            (parameters and buffers; None entries are ignored).
        extra (Hashable): Anything else ``compute`` depends on (e.g. a
            norm's ``eps``); a different value recomputes.

    Returns:
        tuple: The derived tensors.
    """
    sources = [s for s in sources if s is not None]
    needs_grad = torch.is_grad_enabled() and any(s.requires_grad
                                                 for s in sources)
    # A captured graph must contain the derivation: a cached tensor would
    # be a constant there, cut off from the parameters.
    if needs_grad or capturing_graph():
        return compute()
    cache: Dict[str, tuple] = module.__dict__.setdefault(
        _CACHE_ATTR, _DerivedCache())
    # Tensors derived under ``torch.inference_mode`` cannot be saved for a
    # backward later (an input's gradient needs the weight): entries made
    # within it serve passes within it only, the others passes outside.
    signature = (extra, _optimizer_steps,
                 torch.is_inference_mode_enabled()) + tuple(
                     _signature(s) for s in sources)
    entry = cache.get(name)
    if entry is not None and entry[0] == signature:
        return entry[2]
    derived = tuple(t.detach() if t is not None else None for t in compute())
    # Holding detached views of the sources keeps their storage alive, so
    # no other tensor can take their address while the entry exists.
    cache[name] = (signature, [s.detach() for s in sources], derived)
    return derived


def clear_derived_params(model: nn.Module) -> None:
    """Drop the cached derived tensors of ``model`` and its submodules (the
    memory they hold; e.g. when it goes back to training)."""
    for module in model.modules():
        module.__dict__.pop(_CACHE_ATTR, None)
