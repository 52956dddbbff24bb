# Copyright (c) mmsecvit contributors. All rights reserved.
"""Two-dimensional rotary position embedding (RoPE) as used by SecViT."""
import warnings
from typing import Optional, Tuple

import torch
import torch.nn as nn

from mmsecvit.utils.errors import ConfigValueError


def rope_frequencies(head_dims: int,
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """The rotation frequency of every channel of a head, in float32.

    Each frequency rotates one (even, odd) channel pair, so every value is
    repeated twice: shape (head_dims // 2,).
    """
    steps = torch.linspace(0, 1, head_dims // 4, device=device)
    angle = 1.0 / (10000**steps)
    return angle.repeat_interleave(2)


class RoPE2d(nn.Module):
    """Rotary position embedding over the rows and columns of a feature map.

    Half of each head's channels rotate with the row index and half with the
    column index. The frequencies are kept as the buffer ``angle`` (it is
    part of the authors' checkpoints, so it stays in the state dict).

    The tables are computed in float32 (float64 in a float64 model) whatever
    the dtype of the parameters: a position times a frequency needs more
    bits than bfloat16 (8) or float16 (11) hold, which would put ``sin`` and
    ``cos`` off by up to 0.96 (bf16) or 0.04 (fp16) on large maps. Users
    cast them to the dtype of q and k (see
    :func:`~mmsecvit.models.layers.sec_attention.rope_qk`). A buffer cast
    to a low precision (``model.half()``, FSDP's ``buffer_dtype``) has lost
    the frequencies' bits, so they are recomputed then.

    Args:
        embed_dims (int): Channels of the stage.
        num_heads (int): Attention heads of the stage. ``embed_dims //
            num_heads`` must be divisible by 4.
    """

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        head_dims = embed_dims // num_heads
        if head_dims % 4 != 0:
            raise ConfigValueError(
                f'RoPE2d needs a head dimension divisible by 4, got '
                f'{embed_dims} channels / {num_heads} heads = {head_dims}. '
                'Choose num_heads so that embed_dims // num_heads is a '
                'multiple of 4.')
        self.head_dims = head_dims
        self.register_buffer('angle', rope_frequencies(head_dims))

    @torch.no_grad()
    def reset_frequencies(self) -> None:
        """Set ``angle`` to the exact frequencies (in its dtype)."""
        self.angle.copy_(rope_frequencies(self.head_dims, self.angle.device))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Load ``angle`` as any buffer (the authors' checkpoints hold it),
        then check it: a checkpoint saved in half precision has rounded the
        frequencies (by up to 3e-4, enough to move ``sin`` by 1e-2 on a
        detection-sized map); they are recomputed then, with a warning."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if (self.angle.is_meta or prefix + 'angle' not in state_dict
                or self.angle.dtype not in (torch.float32, torch.float64)):
            # (A half-precision buffer cannot hold them: forward recomputes
            # the frequencies for it.)
            return
        exact = rope_frequencies(self.head_dims, self.angle.device)
        loaded = state_dict[prefix + 'angle']
        if loaded.shape == exact.shape and not torch.allclose(
                loaded.to(exact), exact, rtol=1e-6, atol=0):
            error = ((loaded.to(exact) - exact).abs() / exact).max()
            warnings.warn(
                f'{prefix}angle in the checkpoint differs from the RoPE '
                f'frequencies by up to {error:.1e} (relative; saved in half '
                'precision?); the exact frequencies are used.')
            self.reset_frequencies()

    def forward(self, hw_shape: Tuple[int, int]) -> Tuple[torch.Tensor, ...]:
        """Compute the rotation tables for a feature map.

        Args:
            hw_shape (tuple[int, int]): Height and width of the map.

        Returns:
            tuple[Tensor, Tensor]: ``sin`` and ``cos``, each of shape
            (H * W, head_dims), in float64 if ``angle`` is, else float32.
        """
        h, w = hw_shape
        angle = self.angle
        if angle.dtype not in (torch.float32, torch.float64):
            angle = rope_frequencies(self.head_dims, angle.device)
        rows = torch.arange(h, device=angle.device).to(angle)
        cols = torch.arange(w, device=angle.device).to(angle)
        phase_h = rows[:, None] * angle  # (H, D/2)
        phase_w = cols[:, None] * angle  # (W, D/2)
        phase = torch.cat([
            phase_h[:, None, :].expand(h, w, -1),
            phase_w[None, :, :].expand(h, w, -1)
        ], dim=-1).flatten(0, 1)  # (H*W, D)
        return phase.sin(), phase.cos()


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Map each channel pair (a, b) to (-b, a)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([-odd, even], dim=-1).flatten(-2)


def swap_pairs(x: torch.Tensor) -> torch.Tensor:
    """Map each channel pair (a, b) to (b, a) with a single copy."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """``sin`` with the even channels negated, so that ``rotate_pairs(x) *
    sin == swap_pairs(x) * signed_sin(sin)`` exactly (negation is exact)."""
    # Not ``sin * tensor([-1, 1, ...])``: a tensor made from host data is
    # a host-to-device copy that synchronises on every call on CUDA.
    return torch.stack([-sin[..., 0::2], sin[..., 1::2]], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, sin: torch.Tensor,
               cos: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape (..., H*W, head_dims) by the tables of
    :class:`RoPE2d`."""
    return x * cos + swap_pairs(x) * signed_sin(sin)
