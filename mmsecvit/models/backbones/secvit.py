# Copyright (c) mmsecvit contributors. All rights reserved.
"""SecViT backbone (Semantic Equitable Clustering Vision Transformer).

Fan et al., "Semantic Equitable Clustering: A Simple and Effective Strategy
for Clustering Vision Tokens", arXiv 2405.13337. Module and parameter names
follow the authors' classification code so that their ImageNet checkpoints
load without conversion.
"""
import ast
import copy
import json
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from mmsecvit.registry import MODELS
from mmsecvit.utils.errors import (ConfigKeyError, ConfigTypeError,
                                   ConfigValueError)
from ..layers import (BATCH_NORMS, LayerNorm2d, RoPE2d, SECAttention,
                      clear_derived_params, conv2d_gelu, conv_norm,
                      conv_plus_identity, has_module_hooks, residual_conv_)
from ..layers.activation_checkpoint import (check_selective_checkpoint_support,
                                            selective_checkpoint_context)
from ..layers.norm import MMSyncBatchNorm
from .secvit_weights import (CheckpointMismatchError, check_compatible,
                             load_pretrained_backbone)


class ConvStem(nn.Module):
    """Four 3x3 convolutions with BN and GELU; stride 4 in total.

    Args:
        in_channels (int): Channels of the image.
        embed_dims (int): Channels of the first stage.
        norm_cfg (dict): Config of the normalisation layers.
    """

    def __init__(self, in_channels: int, embed_dims: int,
                 norm_cfg: dict) -> None:
        super().__init__()
        mid = embed_dims // 2
        layers = []
        for cin, cout, stride, act in [(in_channels, mid, 2, True),
                                       (mid, mid, 1, True),
                                       (mid, mid, 1, True),
                                       (mid, embed_dims, 2, False)]:
            layers += [
                nn.Conv2d(cin, cout, 3, stride, 1),
                build_norm_layer(norm_cfg, cout)[1]
            ]
            if act:
                layers.append(nn.GELU())
        # The name ``proj`` (a Sequential) matches the authors' checkpoints.
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``self.proj(x)``, with eval-mode BN folded into the convolutions
        # and GELU fused into them (or in place) where possible; modules
        # with hooks run as modules.
        modules = list(self.proj)
        for i, module in enumerate(modules):
            if isinstance(module, nn.Conv2d):
                act = modules[i + 2] if i + 2 < len(modules) and isinstance(
                    modules[i + 2], nn.GELU) else None
                hooked_act = act is not None and has_module_hooks(act)
                x = conv_norm(
                    module,
                    modules[i + 1],
                    x,
                    gelu=act is not None and not hooked_act)
                if hooked_act:
                    x = act(x)
        return x


class ConvDownsample(nn.Module):
    """A stride-2 3x3 convolution followed by a norm layer.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        norm_cfg (dict): Config of the normalisation layer.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 norm_cfg: dict) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_norm(self.reduction, self.norm, x)


class ConvFFN(nn.Module):
    """1x1 conv, GELU, residual 3x3 depth-wise conv, 1x1 conv.

    Args:
        embed_dims (int): Input and output channels.
        hidden_dims (int): Hidden channels.
    """

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(embed_dims, hidden_dims, 1)
        self.dwconv = nn.Conv2d(
            hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.fc2 = nn.Conv2d(hidden_dims, embed_dims, 1)

    def forward(self,
                x: torch.Tensor,
                identity: Optional[torch.Tensor] = None,
                scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): Input map (B, C, H, W).
            identity, scale (Tensor, optional): If ``identity`` is given,
                ``identity + scale * ffn(x)``; see
                :func:`~mmsecvit.models.layers.conv_fusion.residual_conv_`.

        Returns:
            Tensor: ``ffn(x)``, or the sum described above.
        """
        # Modules with hooks are called as modules (see has_module_hooks),
        # and their outputs are not overwritten.
        if has_module_hooks(self.fc1):
            x = F.gelu(self.fc1(x))
        else:
            x = conv2d_gelu(
                x, self.fc1.weight, self.fc1.bias, module=self.fc1)
        x = conv_plus_identity(self.dwconv, x)  # x + dwconv(x)
        if identity is None:
            return self.fc2(x)
        return residual_conv_(identity, self.fc2, x, scale)


class SecViTBlock(nn.Module):
    """Conditional position encoding, SEC attention and FFN, pre-norm.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Attention heads.
        num_clusters (int): Clusters of the attention (-1: global).
        mlp_ratio (float): Hidden channels of the FFN over ``embed_dims``.
        drop_path (float): Stochastic depth rate.
        layer_scale (bool): Whether to scale both branches by learnable
            per-channel factors ``gamma_1`` and ``gamma_2``.
        layer_scale_init (float): Initial value of those factors.
        cluster_mode (str): See :class:`SECAttention`.
        cluster_size (int): See :class:`SECAttention`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_clusters: int,
                 mlp_ratio: float = 3.,
                 drop_path: float = 0.,
                 layer_scale: bool = False,
                 layer_scale_init: float = 1e-6,
                 cluster_mode: str = 'num_clusters',
                 cluster_size: int = 98) -> None:
        super().__init__()
        self.pos = nn.Conv2d(
            embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.norm1 = LayerNorm2d(embed_dims, eps=1e-6)
        self.attn = SECAttention(embed_dims, num_heads, num_clusters,
                                 cluster_mode, cluster_size)
        self.norm2 = LayerNorm2d(embed_dims, eps=1e-6)
        self.ffn = ConvFFN(embed_dims, int(mlp_ratio * embed_dims))
        self.drop_path = DropPath(drop_path) if drop_path > 0 \
            else nn.Identity()
        self.layer_scale = layer_scale
        self.layer_scale_init = layer_scale_init
        if layer_scale:
            self.gamma_1 = nn.Parameter(
                torch.full((1, embed_dims, 1, 1), layer_scale_init))
            self.gamma_2 = nn.Parameter(
                torch.full((1, embed_dims, 1, 1), layer_scale_init))

    def forward(self, x: torch.Tensor, sin: torch.Tensor,
                cos: torch.Tensor) -> torch.Tensor:
        x = conv_plus_identity(self.pos, x)  # x + pos(x)
        if not (self.training or torch.is_grad_enabled()
                or has_module_hooks(self.attn) or has_module_hooks(self.ffn)
                or has_module_hooks(self.drop_path)):
            # Inference: the residual sums (and layer scales) go into the
            # branches' last convolutions, fused on CPU where possible.
            # ``x`` is this block's own tensor, so it may be overwritten.
            # (Not where a hook on a branch, or on the drop path the
            # branches pass through, would see the sum instead of the
            # branch's output, or not run.)
            gamma_1 = self.gamma_1 if self.layer_scale else None
            gamma_2 = self.gamma_2 if self.layer_scale else None
            x = self.attn(self.norm1(x), sin, cos, identity=x, scale=gamma_1)
            return self.ffn(self.norm2(x), identity=x, scale=gamma_2)
        attn = self.attn(self.norm1(x), sin, cos)
        if self.layer_scale:
            attn = self.gamma_1 * attn
        x = x + self.drop_path(attn)
        ffn = self.ffn(self.norm2(x))
        if self.layer_scale:
            ffn = self.gamma_2 * ffn
        return x + self.drop_path(ffn)


class SecViTStage(nn.Module):
    """The blocks of one stage, sharing one RoPE table, and the downsample
    that ends the stage (none in the last stage).

    Args:
        embed_dims (int): Channels of the stage.
        depth (int): Blocks.
        num_heads (int): Attention heads.
        num_clusters (Sequence[int]): Clusters of each block.
        out_channels (int, optional): Channels after the downsample; None
            for the last stage, which has no downsample.
        drop_paths (Sequence[float]): Stochastic depth rate of each block.
        norm_cfg (dict): Config of the downsample's norm layer.
        with_cp (str, optional): Activation checkpointing of each block:
            None, ``'full'`` or ``'selective'`` (see :class:`SecViT`).
        block_cfg: Further :class:`SecViTBlock` arguments.
    """

    def __init__(self,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 num_clusters: Sequence[int],
                 out_channels: Optional[int],
                 drop_paths: Sequence[float],
                 norm_cfg: dict,
                 with_cp: Optional[str] = None,
                 **block_cfg) -> None:
        super().__init__()
        self.with_cp = with_cp
        # What activation checkpointing keeps: selected outputs, or nothing
        # ('full').
        self._activation_checkpoint_context = (
            selective_checkpoint_context
            if with_cp == 'selective' else cp.noop_context_fn)
        # Named like the authors' attribute so the buffer key matches.
        self.RoPE = RoPE2d(embed_dims, num_heads)
        self.blocks = nn.ModuleList([
            SecViTBlock(
                embed_dims,
                num_heads,
                num_clusters[i],
                drop_path=drop_paths[i],
                **block_cfg) for i in range(depth)
        ])
        self.downsample = None if out_channels is None else ConvDownsample(
            embed_dims, out_channels, norm_cfg)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns the map after the blocks and the downsampled map (the
        former again in the last stage)."""
        sin, cos = self.RoPE(x.shape[2:])
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(
                    block,
                    x,
                    sin,
                    cos,
                    use_reentrant=False,
                    context_fn=self._activation_checkpoint_context)
            else:
                x = block(x, sin, cos)
        down = x if self.downsample is None else self.downsample(x)
        return x, down


def syncs_batch_statistics(norm: nn.Module) -> bool:
    """Whether ``norm`` is a SyncBN layer that, called in its current mode,
    joins a collective with the other ranks (where a process group exists).

    torch's ``SyncBatchNorm`` syncs in training mode; mmcv's syncs in
    training mode and, without running statistics
    (``track_running_stats=False``), in eval mode too.
    """
    if isinstance(norm, nn.SyncBatchNorm):
        return norm.training
    if isinstance(norm, MMSyncBatchNorm):
        return norm.training or not norm.track_running_stats
    return False


def output_size(hw: Tuple[int, int], stride: int) -> Tuple[int, int]:
    """Spatial size of a stride-``stride`` output for an ``hw`` input (each
    stride-2 convolution rounds up)."""
    return tuple(-(-side // stride) for side in hw)


def valid_sizes(x: torch.Tensor, pad_value: float) -> List[Tuple[int, int]]:
    """Height and width of each image of a padded batch: the image ends at
    its last row and column holding a pixel that differs from ``pad_value``
    in any channel. An image made only of ``pad_value`` keeps its full
    size."""
    content = (x != pad_value).any(dim=1)  # (B, H, W)
    sizes = []
    for mask in content:
        rows = mask.any(dim=1).nonzero()
        cols = mask.any(dim=0).nonzero()
        if len(rows) == 0:
            sizes.append(tuple(x.shape[2:]))
        else:
            sizes.append((int(rows[-1]) + 1, int(cols[-1]) + 1))
    return sizes


@MODELS.register_module()
class SecViT(BaseModule):
    """SecViT backbone for dense prediction.

    A hierarchical transformer with a convolutional stem, four stages of
    blocks whose attention works within Semantic Equitable Clusters (tokens
    ranked by the similarity of their key to the mean key and cut into
    equally long chunks) and strided-conv downsampling between stages.

    Beyond the authors' classification model it accepts any input size:
    outputs have spatial size ``ceil(H / 2**(i + 2))``; a token count that
    does not divide by the number of clusters gives a shorter last cluster
    (equivalent to masked padding, see
    :mod:`mmsecvit.models.layers.sec_attention`).

    Args:
        arch (str | dict): One of ``arch_zoo`` ('tiny', 'small', 'base',
            'large' or 't', 's', 'b', 'l') or a dict with the keys
            ``embed_dims``, ``depths``, ``num_heads``, ``num_clusters`` (an
            int per stage or a list per block; -1 is global attention) and
            optionally ``mlp_ratios`` (float or one per stage),
            ``layer_scales`` (bool per stage), ``layer_scale_init`` and
            ``drop_path_rate``. Defaults to 'small'.
        in_channels (int): Channels of the input image. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to (0, 1, 2, 3).
        out_norm (bool): Add a LayerNorm to each returned output, as mmdet's
            Swin does. If False, return each stage's map after its blocks
            and before its downsample. Defaults to True.
        cluster_mode (str): ``'num_clusters'``: every block keeps the
            number of clusters of ``arch`` at every input size (the paper's
            choice; attention cost quadratic in the tokens).
            ``'cluster_size'``: every clustered block keeps ``cluster_size``
            tokens per cluster (linear cost; identical to the paper's mode
            at 224x224 with the default 98). Global blocks stay global in
            both modes. Defaults to 'num_clusters'.
        cluster_size (int | Sequence[int]): Tokens per cluster in
            ``'cluster_size'`` mode, one value or one per stage. Defaults
            to 98.
        drop_path_rate (float, optional): Stochastic depth rate, increasing
            linearly over the blocks. Defaults to the arch's value.
        frozen_stages (int): Stages to freeze (stop gradients and set to
            eval mode): 0 freezes the stem, i >= 1 also stages 0..i-1 with
            their downsample and output norm. -1 freezes nothing.
        norm_eval (bool): Keep the BatchNorm layers (stem, downsample;
            torch's BN/SyncBN and mmcv's MMSyncBN) in eval mode during
            training. Defaults to False.
        with_cp (bool | str): Non-reentrant activation checkpointing of each
            block, trading compute for memory. ``False``: none. ``True`` or
            ``'full'``: keep only each block's input and recompute the whole
            block in the backward pass (least memory). ``'selective'``: keep
            the outputs of the attention kernel, of the qkv and first FFN
            convolutions and of the ranking's sort, recompute the cheap
            rest (norms, depth-wise convolutions, GELU, RoPE, clustering,
            the output projection): much
            less memory than no checkpointing for a small share of the time
            of full recomputation (docs/benchmark.md). Results and gradients
            are the same in every mode. Defaults to False.
        norm_cfg (dict): Norm layers of the stem and the downsamples.
            Defaults to ``dict(type='BN', requires_grad=True)``; use
            ``SyncBN`` for multi-GPU training.
        crop_batch_padding (bool): Cut off, per image, the trailing rows
            and columns in which every channel equals ``pad_value`` (the
            padding that mmdet's and mmseg's data preprocessors add after
            normalisation to batch images of different sizes), run the
            backbone on each distinct image size and zero-pad the outputs
            back. Then padded pixels never reach clustering or attention
            and an image's features do not depend on the other images of
            its batch, at the cost of one pass per distinct size. Keep it
            False for unnormalised inputs, where a black border would look
            like padding. With SyncBN it needs ``norm_eval=True``: SyncBN
            with batch statistics would be called a different number of
            times on ranks that split their batch differently, and they
            would wait on each other; in eval mode it uses its running
            statistics and never syncs. Checked when built and, for SyncBN
            converted later (MMEngine's ``sync_bn`` option), at every
            forward. Defaults to False.
        pad_value (float): The value of padded pixels. Defaults to 0.
        checkpoint_key (str): Which weights to take from an authors'
            checkpoint that holds several: 'model' or 'model_ema'.
            Defaults to 'model'.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=PATH)`` loads an authors' ImageNet checkpoint (or an
            mmsecvit / mmdet / mmseg one); None initialises as the authors
            do. Other MMEngine initialisers run as in any ``BaseModule``;
            in a list with a 'Pretrained' entry, before the checkpoint is
            loaded. Defaults to None.
        pretrained (str, optional): Deprecated, use ``init_cfg``: a
            checkpoint path, turned into ``dict(type='Pretrained',
            checkpoint=pretrained)`` as mmdet's and mmseg's own backbones
            do. It exists because mmseg's ``EncoderDecoder`` passes a
            config's ``model.pretrained`` here. Defaults to None.

    Examples:
        >>> import torch
        >>> from mmsecvit.models import SecViT
        >>> model = SecViT(arch='tiny').eval()
        >>> outs = model(torch.rand(1, 3, 224, 300))
        >>> [tuple(o.shape) for o in outs]
        [(1, 64, 56, 75), (1, 128, 28, 38), (1, 256, 14, 19), (1, 512, 7, 10)]
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': [64, 128, 256, 512],
            'depths': [2, 2, 9, 2],
            'num_heads': [2, 4, 8, 16],
            'num_clusters': [32, 8, 2, -1],
            'mlp_ratios': 3.,
            'layer_scales': [False, False, False, False],
            'drop_path_rate': 0.1,
        }),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': [64, 128, 256, 512],
            'depths': [3, 4, 18, 4],
            'num_heads': [2, 4, 8, 16],
            'num_clusters': [32, 8, 2, -1],
            'mlp_ratios': 3.,
            'layer_scales': [False, False, False, False],
            'drop_path_rate': 0.15,
        }),
        # The authors' ``KClusterFormerSimpleNew_M``.
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': [80, 160, 320, 512],
            'depths': [4, 8, 26, 8],
            'num_heads': [5, 5, 10, 16],
            'num_clusters': [32, 8, 2, -1],
            'mlp_ratios': 3.,
            'layer_scales': [False, False, True, True],
            'drop_path_rate': 0.4,
        }),
        **dict.fromkeys(['l', 'large'], {
            'embed_dims': [112, 224, 448, 640],
            'depths': [4, 8, 26, 8],
            'num_heads': [7, 7, 14, 20],
            'num_clusters': [32, 8, 2, -1],
            'mlp_ratios': 3.,
            'layer_scales': [False, False, True, True],
            'drop_path_rate': 0.5,
        }),
    }
    _required_keys = {'embed_dims', 'depths', 'num_heads', 'num_clusters'}
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: bool = True,
                 cluster_mode: str = 'num_clusters',
                 cluster_size: Union[int, Sequence[int]] = 98,
                 drop_path_rate: Optional[float] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: Union[bool, str] = False,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 crop_batch_padding: bool = False,
                 pad_value: float = 0.,
                 checkpoint_key: str = 'model',
                 init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None) -> None:
        super().__init__(
            init_cfg=self._init_cfg_of_pretrained(pretrained, init_cfg))
        arch = self._parse_arch(arch)
        self.arch_settings = arch
        self.embed_dims = list(arch['embed_dims'])
        self.depths = list(arch['depths'])
        self.num_heads = list(arch['num_heads'])
        self.num_layers = sum(self.depths)
        self.out_indices = self._parse_out_indices(out_indices)
        self.out_norm = out_norm
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.checkpoint_key = checkpoint_key
        self.with_cp = self._parse_with_cp(with_cp)
        self._check_crop_batch_padding(crop_batch_padding, norm_cfg,
                                       norm_eval)
        self.crop_batch_padding = crop_batch_padding
        self.pad_value = pad_value
        num_clusters = self._per_block(arch['num_clusters'], 'num_clusters')
        mlp_ratios = self._per_stage(arch.get('mlp_ratios', 3.), 'mlp_ratios')
        layer_scales = self._per_stage(
            arch.get('layer_scales', False), 'layer_scales')
        cluster_sizes = self._per_stage(cluster_size, 'cluster_size')
        if drop_path_rate is None:
            drop_path_rate = arch.get('drop_path_rate', 0.)
        self.drop_path_rate = drop_path_rate
        dpr = torch.linspace(
            0, drop_path_rate, self.num_layers, device='cpu').tolist()

        self.patch_embed = ConvStem(in_channels, self.embed_dims[0], norm_cfg)
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            first = sum(self.depths[:i])
            last_stage = i == self.num_stages - 1
            self.layers.append(
                SecViTStage(
                    self.embed_dims[i],
                    self.depths[i],
                    self.num_heads[i],
                    num_clusters[i],
                    out_channels=None if last_stage else self.embed_dims[i +
                                                                         1],
                    drop_paths=dpr[first:first + self.depths[i]],
                    norm_cfg=norm_cfg,
                    with_cp=self.with_cp,
                    mlp_ratio=mlp_ratios[i],
                    layer_scale=layer_scales[i],
                    layer_scale_init=arch.get('layer_scale_init', 1e-6),
                    cluster_mode=cluster_mode,
                    cluster_size=cluster_sizes[i]))
        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', LayerNorm2d(self.embed_dims[i]))
        # Whether each stage is output, fixed here like the output norms.
        # The forward reads these constants: torch 2.6's Dynamo, with
        # dynamic shapes, evaluated ``i in self.out_indices`` there as False
        # and the compiled model returned no maps at all.
        self._stage_outputs = tuple(i in self.out_indices
                                    for i in range(len(self.layers)))
        self._freeze_stages()

    # ------------------------------------------------------------------
    # construction helpers

    @staticmethod
    def _parse_with_cp(with_cp: Union[bool, str]) -> Optional[str]:
        """None, 'full' or 'selective' from the ``with_cp`` argument."""
        modes = {False: None, True: 'full', 'full': 'full',
                 'selective': 'selective'}
        if isinstance(with_cp, (bool, str)) and with_cp in modes:
            if modes[with_cp] == 'selective':
                check_selective_checkpoint_support()
            return modes[with_cp]
        raise ConfigValueError(f'with_cp must be False, True, "full" or '
                               f'"selective", got {with_cp!r}.')

    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                raise ConfigKeyError(
                    f'Unknown SecViT arch {arch!r}. Choose one of '
                    f'{sorted(set(self.arch_zoo))} or pass a dict with the '
                    f'keys {sorted(self._required_keys)}.')
            return copy.deepcopy(self.arch_zoo[key])
        if not isinstance(arch, dict):
            raise ConfigTypeError(
                f'arch must be a str or a dict, got {type(arch)}.')
        missing = self._required_keys - set(arch)
        if missing:
            raise ConfigKeyError(f'The custom SecViT arch lacks the keys '
                                 f'{sorted(missing)}; it needs '
                                 f'{sorted(self._required_keys)}.')
        for key in ('embed_dims', 'depths', 'num_heads'):
            if len(arch[key]) != self.num_stages:
                raise ConfigValueError(
                    f'arch[{key!r}] must have {self.num_stages} '
                    f'values, got {list(arch[key])}.')
        return copy.deepcopy(dict(arch))

    @staticmethod
    def _init_cfg_of_pretrained(pretrained: Optional[str],
                                init_cfg: Optional[dict]) -> Optional[dict]:
        """``init_cfg``, or the one the deprecated ``pretrained`` stands
        for."""
        if pretrained is None:
            return init_cfg
        if not isinstance(pretrained, str):
            raise ConfigTypeError(
                'SecViT: pretrained must be a checkpoint path (str) or None, '
                f'got {type(pretrained).__name__}')
        if init_cfg is not None:
            raise ConfigValueError(
                'SecViT got both pretrained and init_cfg: keep only '
                "init_cfg=dict(type='Pretrained', checkpoint=...). mmseg "
                "passes a config's model.pretrained to the backbone: set "
                'model.pretrained=None in the config.')
        # FutureWarning, not DeprecationWarning: Python shows it by default,
        # and the user's config is what needs changing.
        warnings.warn(
            'SecViT: pretrained is deprecated, use '
            f"init_cfg=dict(type='Pretrained', checkpoint={pretrained!r})",
            FutureWarning)
        return dict(type='Pretrained', checkpoint=pretrained)

    @staticmethod
    def _check_crop_batch_padding(crop_batch_padding: bool, norm_cfg: dict,
                                  norm_eval: bool) -> None:
        """Refuse ``crop_batch_padding`` with SyncBN that syncs in training.

        With ``crop_batch_padding`` the backbone runs once per distinct
        image size, so ranks whose batches hold different numbers of sizes
        call each norm layer a different number of times. A SyncBN layer
        that normalises by batch statistics joins a collective in every
        call, and the ranks would wait on each other for ever. With
        ``norm_eval=True`` the norm layers stay in eval mode and normalise
        by their running statistics (folded into the convolutions): no
        collective is ever run, so any number of passes is safe. That holds
        only while the layers keep running statistics: without them
        (``track_running_stats=False``) mmcv's SyncBatchNorm syncs batch
        statistics in eval mode too.
        """
        if not crop_batch_padding or 'SyncBN' not in str(
                norm_cfg.get('type')):
            return
        tracked = norm_cfg.get('track_running_stats', True)
        if norm_eval and tracked:
            return
        if not norm_eval:
            fix = ('set norm_eval=True (the norm layers then use their '
                   'running statistics and never sync), use '
                   "norm_cfg=dict(type='BN'), or set "
                   'crop_batch_padding=False')
        else:
            fix = ('remove track_running_stats=False from norm_cfg so that '
                   'norm_eval=True can normalise by running statistics, use '
                   "norm_cfg=dict(type='BN'), or set "
                   'crop_batch_padding=False')
        raise ConfigValueError(
            f'crop_batch_padding=True cannot be combined with '
            f'{norm_cfg.get("type")} that syncs batch statistics '
            f'(norm_eval={norm_eval}, track_running_stats={tracked}): ranks '
            'with different numbers of distinct image sizes would run it a '
            f'different number of times and deadlock. To fix it, {fix}.')

    def _parse_out_indices(self, out_indices: Sequence[int]) -> List[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        indices = []
        for index in out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ConfigValueError(f'out_indices must lie in [0, '
                                       f'{self.num_stages}), got {index}.')
            indices.append(index % self.num_stages)
        if len(set(indices)) < len(indices):
            raise ConfigValueError(
                f'out_indices {list(out_indices)} name a stage twice (a '
                'negative index counts from the last stage); each stage '
                'gives one map, so name each stage once.')
        return sorted(indices)

    def _per_stage(self, value, name: str) -> list:
        if isinstance(value, (list, tuple)):
            if len(value) != self.num_stages:
                raise ConfigValueError(
                    f'{name} needs one value per stage '
                    f'({self.num_stages}), got {list(value)}.')
            return list(value)
        return [value] * self.num_stages

    def _per_block(self, value, name: str) -> List[List[int]]:
        """One value per block of each stage, from an int per stage or a
        list per block (longer lists are cut, as in the authors' code)."""
        per_stage = self._per_stage(value, name)
        result = []
        for i, (stage_value, depth) in enumerate(zip(per_stage, self.depths)):
            if isinstance(stage_value, (list, tuple)):
                if len(stage_value) < depth:
                    raise ConfigValueError(
                        f'{name}[{i}] has {len(stage_value)} '
                        f'values for {depth} blocks.')
                result.append(list(stage_value[:depth]))
            else:
                result.append([stage_value] * depth)
        return result

    # ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """
        Args:
            x (Tensor): Images (B, C, H, W), any H and W.

        Returns:
            tuple[Tensor]: The maps of ``out_indices``, (B, C_i, ceil(H /
            2**(i+2)), ceil(W / 2**(i+2))).
        """
        if not self.crop_batch_padding:
            return self._forward_batch(x)
        self._check_no_syncing_norms()
        sizes = valid_sizes(x, self.pad_value)
        full = tuple(x.shape[2:])
        if all(size == full for size in sizes):
            return self._forward_batch(x)
        groups: Dict[Tuple[int, int], List[int]] = {}
        for index, size in enumerate(sizes):
            groups.setdefault(size, []).append(index)
        outs = None
        for (h, w), indices in groups.items():
            group_outs = self._forward_batch(x[indices, :, :h, :w])
            if outs is None:
                outs = [
                    out.new_zeros((x.shape[0], out.shape[1],
                                   *output_size(full, stride)))
                    for out, stride in zip(group_outs, self._out_strides())
                ]
            for out, group_out in zip(outs, group_outs):
                oh, ow = group_out.shape[2:]
                out[indices, :, :oh, :ow] = group_out
        return tuple(outs)

    def _norm_holders(self) -> List[Tuple[str, nn.Module]]:
        """The modules that hold the backbone's BatchNorm layers (built
        from ``norm_cfg``): the stem and the downsamples, with their
        names."""
        holders = [('patch_embed', self.patch_embed)]
        for i, stage in enumerate(self.layers):
            if stage.downsample is not None:
                holders.append((f'layers.{i}.downsample', stage.downsample))
        return holders

    def _check_no_syncing_norms(self) -> None:
        """Refuse a ``crop_batch_padding`` forward while a SyncBN layer
        would sync batch statistics.

        The constructor refuses such a ``norm_cfg``
        (:meth:`_check_crop_batch_padding`), but SyncBN can come later:
        MMEngine's ``sync_bn='torch'`` or ``'mmcv'`` config option and
        ``SyncBatchNorm.convert_sync_batchnorm`` replace the BN layers of a
        built model. Then ranks with different numbers of distinct image
        sizes would call the layer a different number of times and hang.
        This raises on every rank, whatever the sizes of its batch, before
        any layer runs. It looks at the stem and the downsamples only (the
        only BatchNorm layers of SecViT), a few attribute reads per
        forward, so a conversion at any time is seen.
        """
        syncing = [(f'{prefix}.{name}' if name else prefix, module)
                   for prefix, holder in self._norm_holders()
                   for name, module in holder.named_modules()
                   if syncs_batch_statistics(module)]
        if not syncing:
            return
        name, norm = syncing[0]
        if norm.track_running_stats:
            fix = ('set norm_eval=True in the backbone config (BatchNorm '
                   'layers then normalise by their running statistics and '
                   'never sync)')
        else:
            fix = ('keep running statistics (track_running_stats=True) and '
                   'set norm_eval=True in the backbone config')
        raise ConfigValueError(
            f'SecViT with crop_batch_padding=True runs the backbone once per '
            f'distinct image size of a batch, but {len(syncing)} of its norm '
            f'layers are SyncBatchNorm that syncs batch statistics across '
            f'ranks (the first: {name}, {type(norm).__module__}.'
            f'{type(norm).__name__}, training={norm.training}, '
            f'track_running_stats={norm.track_running_stats}, '
            f'norm_eval={self.norm_eval}): ranks whose batches hold '
            'different numbers of image sizes would call it a different '
            'number of times and hang. The SyncBN layers probably came '
            "after the backbone was built, from the config's sync_bn "
            'option or SyncBatchNorm.convert_sync_batchnorm. To fix it, '
            f'{fix}; or remove sync_bn from the config (plain BN); or set '
            'crop_batch_padding=False.')

    def _out_strides(self) -> List[int]:
        return [2**(i + 2) for i in self.out_indices]

    def _forward_batch(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        # Channels-last all the way through: the depth-wise and 1x1
        # convolutions run several times faster on CPU, LayerNorm over
        # channels needs no permute copies and the attention reads q, k, v
        # per token without a transpose. Outputs go back to NCHW.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        outs = []
        for i, (stage, wanted) in enumerate(
                zip(self.layers, self._stage_outputs)):
            out, x = stage(x)
            if wanted:
                if self.out_norm:
                    out = getattr(self, f'norm{i}')(out)
                outs.append(out.contiguous())
        return tuple(outs)

    def _freeze_stages(self) -> None:
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        for i in range(min(self.frozen_stages, self.num_stages)):
            frozen.append(self.layers[i])
            if self.out_norm and i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'SecViT':
        super().train(mode)
        self._freeze_stages()
        if mode:
            # Inference caches hold copies of weights; training recomputes.
            clear_derived_params(self)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, BATCH_NORMS):
                    module.eval()
        return self

    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        """Initialise as the authors do: truncated normal (std 0.02) for
        every convolution, zero biases, unit LayerNorm and BatchNorm
        weights (or with MMEngine's initialisers of ``init_cfg``), then load
        pretrained weights (``init_cfg`` of type 'Pretrained') over them.

        Every tensor is set here, not only those the checkpoint lacks: a
        model built on the ``meta`` device and materialised with
        ``to_empty()`` holds uninitialised memory until then. The fixed
        buffers (the RoPE frequencies, BatchNorm's running statistics) are
        reset too.
        """
        pretrained, others = self._split_init_cfg()
        if others:
            # MMEngine's initialisers, without the 'Pretrained' entry, which
            # MMEngine would load without the key mapping below.
            init_cfg, self.init_cfg = self.init_cfg, others
            try:
                super().init_weights()
            finally:
                self.init_cfg = init_cfg
        else:
            self._init_as_authors()
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, RoPE2d):
                    module.reset_frequencies()
                elif isinstance(module, BATCH_NORMS):
                    module.reset_running_stats()
                elif isinstance(module, SecViTBlock) and module.layer_scale:
                    module.gamma_1.fill_(module.layer_scale_init)
                    module.gamma_2.fill_(module.layer_scale_init)
        if pretrained is not None:
            load_pretrained_backbone(
                self,
                pretrained['checkpoint'],
                checkpoint_key=self.checkpoint_key,
                prefix=pretrained.get('prefix'))
        self._is_init = True

    def _init_as_authors(self) -> None:
        """The authors' initialisation (their model-level ``apply``), and
        torch's defaults for the norms."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, ) + BATCH_NORMS):
                if getattr(module, 'weight', None) is not None:
                    nn.init.ones_(module.weight)
                if getattr(module, 'bias', None) is not None:
                    nn.init.zeros_(module.bias)

    def _split_init_cfg(self) -> Tuple[Optional[dict], List[dict]]:
        """The 'Pretrained' entry of ``init_cfg`` (None if there is none),
        and the other entries."""
        if self.init_cfg is None:
            return None, []
        cfgs = self.init_cfg if isinstance(self.init_cfg,
                                           (list, tuple)) else [self.init_cfg]
        if not all(isinstance(cfg, dict) for cfg in cfgs):
            raise ConfigTypeError(
                'init_cfg must be a dict or a list of dicts, e.g. '
                "dict(type='Pretrained', checkpoint=PATH); got "
                f'{self.init_cfg!r}.')
        pretrained = [cfg for cfg in cfgs if cfg.get('type') == 'Pretrained']
        if len(pretrained) > 1:
            raise ConfigValueError(
                f'init_cfg has {len(pretrained)} Pretrained entries; keep the '
                'one whose checkpoint the backbone should load.')
        if pretrained and 'checkpoint' not in pretrained[0]:
            raise ConfigKeyError(
                "init_cfg of type 'Pretrained' needs checkpoint=PATH (a "
                f'file or URL); got {pretrained[0]!r}.')
        others = [cfg for cfg in cfgs if cfg.get('type') != 'Pretrained']
        return (pretrained[0] if pretrained else None), others

    def get_layer_depth(self, param_name: str, prefix: str = '') -> tuple:
        """Layer depth of a parameter, for layer-wise learning-rate decay.

        The stem is layer 0, block j of stage i is ``sum(depths[:i]) + j +
        1``, a downsample goes with the last block of its stage, and all
        other parameters (output norms, and anything outside the backbone
        when ``prefix`` does not match) are the last layer.

        Args:
            param_name (str): Name of the parameter.
            prefix (str): The prefix of the backbone's parameters in the
                whole model, e.g. 'backbone.'. Defaults to ''.

        Returns:
            tuple[int, int]: The layer depth and the number of layers.
        """
        num_layers = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        parts = name.split('.')
        if parts[0] == 'patch_embed':
            depth = 0
        elif parts[0] == 'layers':
            stage = int(parts[1])
            if parts[2] == 'blocks':
                depth = sum(self.depths[:stage]) + int(parts[3]) + 1
            else:
                depth = sum(self.depths[:stage + 1])
        else:
            depth = num_layers - 1
        return depth, num_layers


def parse_arch(text: str) -> Union[str, dict]:
    """Read an arch given as text, e.g. on a command line.

    Args:
        text (str): A name of :attr:`SecViT.arch_zoo` ('t', 'small', ...,
            any case), a JSON object (``'{"embed_dims": [...], ...}'``) or a
            Python dict literal (``"dict(embed_dims=[...], ...)"`` or
            ``"{'embed_dims': [...], ...}"``).

    Returns:
        str | dict: What :class:`SecViT` takes as ``arch`` (names in lower
        case).

    Raises:
        ConfigValueError: An unknown name or a dict that cannot be read.

    Examples:
        >>> parse_arch('S')
        's'
        >>> parse_arch('{"embed_dims": [32, 64, 128, 256]}')
        {'embed_dims': [32, 64, 128, 256]}
    """
    stripped = text.strip()
    if stripped.startswith('dict(') and stripped.endswith(')'):
        call = ast.parse(stripped, mode='eval').body
        try:
            return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except ValueError as err:
            raise ConfigValueError(
                f'Cannot read the arch {text!r}: the values of '
                f'dict(...) must be literals.') from err
    if stripped.startswith('{'):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError) as err:
            raise ConfigValueError(
                f'Cannot read the arch {text!r} as a JSON '
                f'object or a dict literal.') from err
    if stripped.lower() not in SecViT.arch_zoo:
        raise ConfigValueError(f'Unknown SecViT arch {text!r}; choose one of '
                               f'{sorted(SecViT.arch_zoo)} or give a dict.')
    return stripped.lower()


def infer_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """The name of the arch in :attr:`SecViT.arch_zoo` whose backbone has
    exactly the tensors of ``state_dict`` (classifier removed), or None."""
    for arch in ('tiny', 'small', 'base', 'large'):
        with torch.device('meta'):
            model = SecViT(arch=arch, out_norm=False)
        try:
            check_compatible(model, state_dict, '')
        except CheckpointMismatchError:
            continue
        return arch
    return None
