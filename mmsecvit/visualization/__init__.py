# Copyright (c) mmsecvit contributors. All rights reserved.
from .backbone_loader import build_vis_backbone
from .cluster_vis import (RANDOM_WEIGHTS_NOTE, ClusterMap, cluster_boundaries,
                          cluster_palette, collect_cluster_maps,
                          draw_cluster_grid, draw_cluster_overlay,
                          draw_cluster_panel, grid_shape, image_to_tensor,
                          panel_origin, panel_title, resize_longer_side,
                          select_cluster_maps, token_index, upsample_labels)

__all__ = [
    'RANDOM_WEIGHTS_NOTE', 'ClusterMap', 'build_vis_backbone',
    'cluster_boundaries', 'cluster_palette', 'collect_cluster_maps',
    'draw_cluster_grid', 'draw_cluster_overlay', 'draw_cluster_panel',
    'grid_shape', 'image_to_tensor', 'panel_origin', 'panel_title',
    'resize_longer_side', 'select_cluster_maps', 'token_index',
    'upsample_labels'
]
