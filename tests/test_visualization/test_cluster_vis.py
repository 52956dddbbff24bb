# Copyright (c) mmsecvit contributors. All rights reserved.
import numpy as np
import pytest
import torch

from mmsecvit.models.layers import record_cluster_assignments
from mmsecvit.testing import arch_with
from mmsecvit.visualization import (RANDOM_WEIGHTS_NOTE, build_vis_backbone,
                                    cluster_boundaries, cluster_palette,
                                    collect_cluster_maps, draw_cluster_grid,
                                    draw_cluster_overlay, grid_shape,
                                    image_to_tensor, panel_title,
                                    select_cluster_maps, token_index,
                                    upsample_labels)

SMALL_ARCH = arch_with(depths=[1, 2, 1, 1])


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def backbone():
    return build_vis_backbone(SMALL_ARCH, seed=0)


@pytest.mark.parametrize('num_colors', [1, 2, 32, 256])
def test_palette_gives_distinct_colours(num_colors):
    palette = cluster_palette(num_colors)
    assert palette.shape == (num_colors, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == num_colors


def test_palette_draws_more_than_256_clusters():
    """The first stage of a detection-sized image in cluster-size mode
    has hundreds of clusters; drawing it was refused."""
    assert len({tuple(c) for c in cluster_palette(257)}) == 257
    assert cluster_palette(2000).shape == (2000, 3)
    with pytest.raises(ValueError, match='at least one cluster'):
        cluster_palette(0)


def test_token_index_puts_each_token_centre_in_its_token():
    stride, num_tokens = 8, 5
    index = token_index(37, num_tokens, stride)
    assert index.shape == (37, )
    for token in range(num_tokens):
        if token * stride < 37:
            assert index[token * stride] == token
    assert index.max() == num_tokens - 1


def test_upsample_labels_keeps_token_labels_at_their_centres():
    labels = np.arange(12).reshape(3, 4)
    label_map = upsample_labels(labels, 4, (11, 15))
    assert label_map.shape == (11, 15)
    assert (label_map[::4, ::4] == labels).all()


def test_boundaries_mark_one_pixel_where_the_label_changes():
    label_map = np.zeros((4, 6), dtype=int)
    label_map[:, 3:] = 1
    edge = cluster_boundaries(label_map)
    assert edge[:, 2].all()
    assert edge.sum() == 4
    assert not cluster_boundaries(np.zeros((4, 6), dtype=int)).any()


def test_overlay_paints_cluster_colours_and_boundaries():
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    label_map = np.zeros((4, 6), dtype=int)
    label_map[:, 3:] = 1
    palette = np.array([[10, 20, 30], [200, 100, 50]], dtype=np.uint8)
    out = draw_cluster_overlay(image, label_map, palette, alpha=1.)
    assert (out[:, :2] == palette[0]).all()
    assert (out[:, 3:] == palette[1]).all()
    assert (out[:, 2] == 255).all()  # the boundary
    half = draw_cluster_overlay(image, label_map, palette, alpha=0.5)
    assert (half[:, 0] == np.round(palette[0] / 2)).all()


def test_overlay_rejects_alpha_outside_unit_interval():
    with pytest.raises(ValueError, match='alpha'):
        draw_cluster_overlay(
            np.zeros((2, 2, 3), np.uint8),
            np.zeros((2, 2), int),
            cluster_palette(1),
            alpha=1.5)


def test_image_to_tensor_normalises_like_the_configs():
    image = np.full((2, 3, 3), [123.675, 116.28, 103.53], dtype=np.float32)
    x = image_to_tensor(image)
    assert x.shape == (1, 3, 2, 3)
    assert torch.allclose(x, torch.zeros_like(x), atol=1e-5)
    with pytest.raises(ValueError, match='RGB'):
        image_to_tensor(np.zeros((4, 4), dtype=np.uint8))


def test_collected_maps_are_the_assignments_the_model_used(backbone, image):
    backbone.train()
    maps = collect_cluster_maps(backbone, image)
    assert backbone.training  # mode restored
    assert [(m.stage, m.block) for m in maps] == [(0, 0), (1, 0), (1, 1),
                                                  (2, 0), (3, 0)]
    with torch.no_grad(), record_cluster_assignments(backbone.eval()) as rec:
        backbone(image_to_tensor(image))
    for m in maps:
        expected = rec[m.name][0][0].numpy()
        np.testing.assert_array_equal(m.labels, expected)
        assert m.labels.shape[1:] == (-(-40 // m.stride), -(-72 // m.stride))
    stage0 = maps[0]
    assert (stage0.num_clusters, stage0.cluster_length) == (4, 45)  # 180/4
    assert maps[-1].num_clusters == 1  # the global last stage
    # Equitable: every cluster but the last holds exactly the same tokens.
    counts = np.bincount(stage0.labels[0].ravel())
    assert (counts == 45).all()


def test_collect_rejects_a_model_without_sec_attention(image):
    with pytest.raises(ValueError, match='SECAttention'):
        collect_cluster_maps(torch.nn.Conv2d(3, 3, 1), image)


def test_select_picks_stages_and_blocks_and_explains_bad_ones(backbone, image):
    maps = collect_cluster_maps(backbone, image)
    picked = select_cluster_maps(maps, [1, 2], [-1])
    assert [(m.stage, m.block) for m in picked] == [(1, 1), (2, 0)]
    assert len(select_cluster_maps(maps)) == len(maps)
    with pytest.raises(ValueError, match='no stage 5'):
        select_cluster_maps(maps, [5])
    with pytest.raises(ValueError, match='block 3 does not exist'):
        select_cluster_maps(maps, [1], [3])


def test_titles_name_block_clusters_mode_and_random_weights(backbone, image):
    maps = collect_cluster_maps(backbone, image)
    title = panel_title(maps[0], head=0, random_weights=True)
    assert title[0] == 'stage 0 block 0 head 0'
    assert title[1] == '4 clusters x 45 tokens'
    assert 'num_clusters' in title[2]
    assert title[-1] == RANDOM_WEIGHTS_NOTE
    assert RANDOM_WEIGHTS_NOTE not in panel_title(maps[0], 0)
    assert 'global attention' in panel_title(maps[-1], 0)[1]


def test_grid_has_a_row_per_block_and_a_column_per_head(backbone, image):
    maps = select_cluster_maps(
        collect_cluster_maps(backbone, image), [0, 2], [0])
    figure = draw_cluster_grid(image, maps)
    assert figure.shape == (*grid_shape((40, 72), rows=2, cols=4), 3)
    one_head = draw_cluster_grid(image, maps, heads=[0])
    assert one_head.shape == (*grid_shape((40, 72), rows=2, cols=1), 3)
    with pytest.raises(ValueError, match='head 3 does not exist'):
        draw_cluster_grid(image, maps, heads=[3])


def test_head_minus_one_is_the_last_head(backbone, image):
    """As for blocks (-1 was refused for heads)."""
    maps = select_cluster_maps(
        collect_cluster_maps(backbone, image), [2], [0])
    last = maps[0].num_heads - 1
    np.testing.assert_array_equal(
        draw_cluster_grid(image, maps, heads=[-1]),
        draw_cluster_grid(image, maps, heads=[last]))
    with pytest.raises(ValueError, match='-1 for the last'):
        draw_cluster_grid(image, maps, heads=[-last - 2])


def test_same_seed_builds_the_same_random_backbone():
    a = build_vis_backbone(SMALL_ARCH, seed=3)
    b = build_vis_backbone(SMALL_ARCH, seed=3)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not a.training
