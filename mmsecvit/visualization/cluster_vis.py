# Copyright (c) mmsecvit contributors. All rights reserved.
"""Drawing of the token clusters that SEC attention really used.

The assignments come from :func:`mmsecvit.models.layers.
record_cluster_assignments` during an ordinary forward of the backbone, so
the figure shows the model's clustering, not a re-implementation of it.

Every panel is the (resized) input image with a colour per cluster blended
over it and the cluster boundaries (pixels whose cluster differs from the
next pixel's) drawn on top, under a title that names the stage, block and
head, the number of clusters, the tokens per cluster and the cluster mode.
Figures are composed with numpy and OpenCV, not matplotlib's renderer, so
their size in pixels follows from the input alone and a pixel's colour
can be traced back to one token.
"""
import math
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import matplotlib
import numpy as np
import torch
import torch.nn as nn
from matplotlib.colors import LinearSegmentedColormap

from mmsecvit.models.layers import (record_cluster_assignments,
                                    resolve_cluster_length,
                                    sec_attention_modules)
from mmsecvit.utils.errors import ConfigValueError

# The normalisation of the detection and segmentation configs (ImageNet
# statistics on RGB images in 0..255), so the clusters are those a detector
# built on the backbone would see.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

TITLE_LINES = 4
TITLE_LINE_HEIGHT = 14
TITLE_HEIGHT = TITLE_LINES * TITLE_LINE_HEIGHT + 4
PANEL_GAP = 4
BOUNDARY_COLOR = (255, 255, 255)
RANDOM_WEIGHTS_NOTE = 'random weights (no checkpoint)'

_ATTN_NAME = re.compile(r'(?:^|\.)layers\.(\d+)\.blocks\.(\d+)\.attn$')


@dataclass
class ClusterMap:
    """The cluster assignment of one SEC attention for one image.

    Attributes:
        name (str): Name of the attention module in the backbone.
        stage (int): Stage index.
        block (int): Block index within the stage.
        labels (np.ndarray): Cluster index of every token per head, shape
            (heads, h, w). Cluster ``c`` holds the tokens ranked ``c``-th
            by the similarity of their key to the mean key (0: least).
        stride (int): Pixels of the input per token along each axis.
        cluster_length (int): Tokens per cluster (the last may be shorter).
        cluster_mode (str): ``'num_clusters'`` or ``'cluster_size'``.
    """
    name: str
    stage: int
    block: int
    labels: np.ndarray
    stride: int
    cluster_length: int
    cluster_mode: str

    @property
    def num_heads(self) -> int:
        return self.labels.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.labels.shape[1] * self.labels.shape[2]

    @property
    def num_clusters(self) -> int:
        return math.ceil(self.num_tokens / self.cluster_length)


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an image so that its longer side is ``size`` pixels, keeping
    the aspect ratio.

    Args:
        image (np.ndarray): Image of shape (H, W, 3).
        size (int): Length of the longer side after resizing.

    Returns:
        np.ndarray: The resized image.
    """
    if size < 1:
        raise ConfigValueError(f'The image size must be a positive number of '
                               f'pixels, got {size}.')
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    if new_hw == (h, w):
        return image
    return cv2.resize(
        image,
        new_hw[::-1],
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Normalise an RGB uint8 image as the configs do.

    Args:
        image (np.ndarray): RGB image of shape (H, W, 3), values 0..255.

    Returns:
        Tensor: Shape (1, 3, H, W), float32.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'Expected an RGB image of shape (H, W, 3), got '
                         f'shape {image.shape}.')
    x = (image.astype(np.float32) - np.array(IMAGENET_MEAN, np.float32)) \
        / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def collect_cluster_maps(backbone: nn.Module,
                         image: np.ndarray) -> List[ClusterMap]:
    """Run the backbone on one image and return every SEC attention's
    cluster assignment, in the order of the blocks.

    The backbone runs in eval mode without gradients; its train/eval mode
    is restored afterwards.

    Args:
        backbone (nn.Module): A :class:`~mmsecvit.models.SecViT` (or any
            module whose SEC attentions are named
            ``...layers.{i}.blocks.{j}.attn``).
        image (np.ndarray): RGB image of shape (H, W, 3), values 0..255.

    Returns:
        list[ClusterMap]: One map per SEC attention.
    """
    attentions = sec_attention_modules(backbone)
    if not attentions:
        raise ConfigValueError(
            f'{type(backbone).__name__} has no SECAttention module; pass a '
            f'SecViT backbone (e.g. `model.backbone` of a detector).')
    x = image_to_tensor(image)
    param = next(backbone.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), record_cluster_assignments(backbone) as records:
            backbone(x)
    finally:
        backbone.train(was_training)

    maps = []
    for name, module in attentions.items():
        if not records[name]:
            continue  # an attention the forward did not reach
        match = _ATTN_NAME.search(name)
        if match is None:
            raise ValueError(f'Cannot tell the stage and block of the SEC '
                             f'attention {name!r}; expected a name ending '
                             f'in "layers.<i>.blocks.<j>.attn".')
        stage, block = int(match.group(1)), int(match.group(2))
        labels = records[name][0][0].numpy()  # first forward, first image
        h, w = labels.shape[1:]
        maps.append(
            ClusterMap(
                name=name,
                stage=stage,
                block=block,
                labels=labels,
                stride=2**(stage + 2),
                cluster_length=resolve_cluster_length(h * w,
                                                      module.num_clusters,
                                                      module.cluster_mode,
                                                      module.cluster_size),
                cluster_mode=module.cluster_mode))
    return maps


def select_cluster_maps(
        maps: Sequence[ClusterMap],
        stages: Optional[Sequence[int]] = None,
        blocks: Optional[Sequence[int]] = None) -> List[ClusterMap]:
    """Pick the maps of some stages and blocks.

    Args:
        maps (Sequence[ClusterMap]): Output of :func:`collect_cluster_maps`.
        stages (Sequence[int], optional): Stage indices; None for all.
        blocks (Sequence[int], optional): Block indices within each stage,
            negative ones counted from the end (-1: the last block); None
            for all.

    Returns:
        list[ClusterMap]: The selected maps, by stage then block.
    """
    by_stage = {}
    for m in maps:
        by_stage.setdefault(m.stage, []).append(m)
    if stages is None:
        stages = sorted(by_stage)
    selected = []
    for stage in stages:
        if stage not in by_stage:
            raise ConfigValueError(
                f'There is no stage {stage}; the backbone has '
                f'stages {sorted(by_stage)}.')
        stage_maps = sorted(by_stage[stage], key=lambda m: m.block)
        if blocks is None:
            selected.extend(stage_maps)
            continue
        for block in blocks:
            if not -len(stage_maps) <= block < len(stage_maps):
                raise ConfigValueError(
                    f'Stage {stage} has {len(stage_maps)} blocks; block '
                    f'{block} does not exist (use 0..{len(stage_maps) - 1} '
                    f'or -1 for the last).')
            selected.append(stage_maps[block])
    return selected


def cluster_palette(num_colors: int) -> np.ndarray:
    """Distinct RGB colours, ordered along matplotlib's 'turbo' map so that
    a cluster's colour also tells its rank (blue: keys least similar to the
    mean key, red: most similar).

    Args:
        num_colors (int): Number of colours, at least 1. Beyond 256 (e.g.
            the first stage of a detection-sized image in cluster-size
            mode) neighbouring ranks get close colours; the cluster
            boundaries drawn still separate them.

    Returns:
        np.ndarray: uint8 array of shape (num_colors, 3).
    """
    if num_colors < 1:
        raise ConfigValueError(
            f'Needs at least one cluster to draw, got {num_colors}.')
    levels = max(256, num_colors)
    cmap = matplotlib.colormaps['turbo'].resampled(256)
    if levels > 256:
        # turbo is a list of 256 colours: interpolate between them.
        cmap = LinearSegmentedColormap.from_list('turbo', cmap.colors,
                                                 N=levels)
    index = np.round(np.linspace(0, levels - 1, num_colors)).astype(int)
    if num_colors == 1:
        index = np.array([0])
    colors = np.asarray(cmap(index))[:, :3]
    return np.round(colors * 255).astype(np.uint8)


def token_index(size: int, num_tokens: int, stride: int) -> np.ndarray:
    """The token each pixel along one axis belongs to.

    Token ``i`` of a stride-``s`` map is centred on pixel ``s * i`` (the
    stem and downsamples are padded 3x3 convolutions), so each pixel goes
    to the token with the nearest centre.

    Args:
        size (int): Pixels along the axis.
        num_tokens (int): Tokens along the axis.
        stride (int): Pixels per token.

    Returns:
        np.ndarray: Token index of each pixel, shape (size,).
    """
    index = (np.arange(size) + stride // 2) // stride
    return np.minimum(index, num_tokens - 1)


def upsample_labels(labels: np.ndarray, stride: int,
                    out_hw: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a token label map to pixels.

    Args:
        labels (np.ndarray): Labels of shape (h, w).
        stride (int): Pixels per token.
        out_hw (tuple[int, int]): Size (H, W) of the image.

    Returns:
        np.ndarray: Labels of shape (H, W).
    """
    rows = token_index(out_hw[0], labels.shape[0], stride)
    cols = token_index(out_hw[1], labels.shape[1], stride)
    return labels[rows[:, None], cols[None, :]]


def cluster_boundaries(label_map: np.ndarray) -> np.ndarray:
    """Pixels whose label differs from their right or lower neighbour.

    Marking one side of each edge only keeps the lines one pixel thick, so
    that stride-4 tokens of the first stage keep most of their colour.

    Args:
        label_map (np.ndarray): Labels of shape (H, W).

    Returns:
        np.ndarray: Boolean mask of shape (H, W).
    """
    edge = np.zeros(label_map.shape, dtype=bool)
    edge[:-1] |= label_map[1:] != label_map[:-1]
    edge[:, :-1] |= label_map[:, 1:] != label_map[:, :-1]
    return edge


def draw_cluster_overlay(image: np.ndarray,
                         label_map: np.ndarray,
                         palette: np.ndarray,
                         alpha: float = 0.5) -> np.ndarray:
    """Blend a colour per cluster over an image and draw the boundaries.

    Args:
        image (np.ndarray): RGB uint8 image of shape (H, W, 3).
        label_map (np.ndarray): Cluster of every pixel, shape (H, W).
        palette (np.ndarray): uint8 colours, one row per cluster.
        alpha (float): Weight of the cluster colour; 1 paints the clusters
            opaque. Defaults to 0.5.

    Returns:
        np.ndarray: RGB uint8 image of shape (H, W, 3).
    """
    if not 0 <= alpha <= 1:
        raise ConfigValueError(f'alpha must lie in [0, 1], got {alpha}.')
    colors = palette[label_map].astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colors
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    out[cluster_boundaries(label_map)] = BOUNDARY_COLOR
    return out


def panel_title(cluster_map: ClusterMap,
                head: int,
                random_weights: bool = False) -> List[str]:
    """The title lines of one panel.

    Args:
        cluster_map (ClusterMap): The block's assignment.
        head (int): The head shown.
        random_weights (bool): Whether the backbone has no trained weights.

    Returns:
        list[str]: Up to :data:`TITLE_LINES` lines.
    """
    m = cluster_map
    lines = [f'stage {m.stage} block {m.block} head {head}']
    if m.num_clusters == 1:
        lines.append(f'global attention: 1 x {m.num_tokens} tokens')
    else:
        last = m.num_tokens - (m.num_clusters - 1) * m.cluster_length
        tail = '' if last == m.cluster_length else f' (last {last})'
        lines.append(f'{m.num_clusters} clusters x {m.cluster_length} '
                     f'tokens{tail}')
    lines.append(f'mode: {m.cluster_mode}')
    if random_weights:
        lines.append(RANDOM_WEIGHTS_NOTE)
    return lines


def _draw_title(width: int, lines: Sequence[str]) -> np.ndarray:
    """White strip of :data:`TITLE_HEIGHT` x ``width`` with black text,
    each line shrunk to fit the width."""
    strip = np.full((TITLE_HEIGHT, width, 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, line in enumerate(lines[:TITLE_LINES]):
        scale = 0.4
        text_w = cv2.getTextSize(line, font, scale, 1)[0][0]
        if text_w > width - 4:
            scale *= (width - 4) / text_w
        y = (i + 1) * TITLE_LINE_HEIGHT
        cv2.putText(strip, line, (2, y), font, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return strip


def draw_cluster_panel(image: np.ndarray,
                       cluster_map: ClusterMap,
                       head: int,
                       alpha: float = 0.5,
                       random_weights: bool = False) -> np.ndarray:
    """One head's clusters over the image, under its title.

    Args:
        image (np.ndarray): The RGB uint8 image the backbone saw, (H, W, 3).
        cluster_map (ClusterMap): The block's assignment.
        head (int): The head to draw; negative counts from the last.
        alpha (float): See :func:`draw_cluster_overlay`.
        random_weights (bool): Add :data:`RANDOM_WEIGHTS_NOTE` to the title.

    Returns:
        np.ndarray: RGB uint8 array of shape (TITLE_HEIGHT + H, W, 3).
    """
    if not -cluster_map.num_heads <= head < cluster_map.num_heads:
        raise ConfigValueError(
            f'Stage {cluster_map.stage} has '
            f'{cluster_map.num_heads} heads; head {head} does '
            f'not exist (use 0..{cluster_map.num_heads - 1}, or -1 for the '
            'last).')
    head %= cluster_map.num_heads  # -1: the last, as for blocks
    label_map = upsample_labels(cluster_map.labels[head], cluster_map.stride,
                                image.shape[:2])
    palette = cluster_palette(cluster_map.num_clusters)
    overlay = draw_cluster_overlay(image, label_map, palette, alpha)
    title = _draw_title(image.shape[1],
                        panel_title(cluster_map, head, random_weights))
    return np.concatenate([title, overlay], axis=0)


def grid_shape(image_hw: Tuple[int, int], rows: int,
               cols: int) -> Tuple[int, int]:
    """Size (height, width) in pixels of a grid of panels.

    Args:
        image_hw (tuple[int, int]): Size of the image in each panel.
        rows (int): Panel rows.
        cols (int): Panel columns.

    Returns:
        tuple[int, int]: Height and width of the figure.
    """
    h, w = image_hw
    return (rows * (TITLE_HEIGHT + h) + (rows + 1) * PANEL_GAP,
            cols * w + (cols + 1) * PANEL_GAP)


def panel_origin(image_hw: Tuple[int, int], row: int,
                 col: int) -> Tuple[int, int]:
    """Top-left pixel (y, x) of the image area of a panel in the grid."""
    h, w = image_hw
    y = PANEL_GAP + row * (TITLE_HEIGHT + h + PANEL_GAP) + TITLE_HEIGHT
    x = PANEL_GAP + col * (w + PANEL_GAP)
    return y, x


def draw_cluster_grid(image: np.ndarray,
                      cluster_maps: Sequence[ClusterMap],
                      heads: Optional[Sequence[int]] = None,
                      alpha: float = 0.5,
                      random_weights: bool = False) -> np.ndarray:
    """A grid of panels: one row per block, one column per head.

    Rows with fewer heads than the widest row are padded with white.

    Args:
        image (np.ndarray): The RGB uint8 image the backbone saw, (H, W, 3).
        cluster_maps (Sequence[ClusterMap]): The blocks to draw.
        heads (Sequence[int], optional): Heads to draw in every row; None
            draws all heads of each block.
        alpha (float): See :func:`draw_cluster_overlay`.
        random_weights (bool): Add :data:`RANDOM_WEIGHTS_NOTE` to the
            titles.

    Returns:
        np.ndarray: RGB uint8 figure of the size :func:`grid_shape` gives.
    """
    if not cluster_maps:
        raise ConfigValueError('No cluster maps to draw.')
    row_heads = [
        list(range(m.num_heads)) if heads is None else list(heads)
        for m in cluster_maps
    ]
    cols = max(len(h) for h in row_heads)
    image_hw = image.shape[:2]
    figure = np.full((*grid_shape(image_hw, len(cluster_maps), cols), 3),
                     255,
                     dtype=np.uint8)
    for row, (cluster_map,
              selected) in enumerate(zip(cluster_maps, row_heads)):
        for col, head in enumerate(selected):
            panel = draw_cluster_panel(image, cluster_map, head, alpha,
                                       random_weights)
            y, x = panel_origin(image_hw, row, col)
            figure[y - TITLE_HEIGHT:y + image_hw[0], x:x + image_hw[1]] = panel
    return figure
