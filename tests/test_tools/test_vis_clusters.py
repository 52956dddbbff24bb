# Copyright (c) mmsecvit contributors. All rights reserved.
import os.path as osp
import runpy

import cv2
import numpy as np
import pytest
import torch
from conftest import TOOLS
from skimage import data as skimage_data

from mmsecvit.models import SecViT, parse_arch
from mmsecvit.models.layers import record_cluster_assignments
from mmsecvit.testing import arch_literal
from mmsecvit.visualization import (build_vis_backbone, cluster_palette,
                                    grid_shape, image_to_tensor, panel_origin,
                                    resize_longer_side)

ARCH = arch_literal()


@pytest.fixture(scope='module')
def vis_clusters():
    """The tool's functions, loaded as a module."""
    return runpy.run_path(
        osp.join(TOOLS, 'analysis_tools', 'vis_clusters.py'),
        run_name='vis_clusters')


@pytest.fixture
def photo(tmp_path):
    """A real photograph (scikit-image's cat, 451x300) as a file."""
    path = str(tmp_path / 'chelsea.png')
    cv2.imwrite(path, cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2BGR))
    return path


def test_figure_colours_each_token_by_the_cluster_the_model_used(
        vis_clusters, photo, tmp_path):
    out = str(tmp_path / 'out' / 'clusters.png')
    vis_clusters['main']([
        photo, '--arch', ARCH, '--stage', '0', '1', '--block', '0', '--size',
        '96', '--alpha', '1', '--seed', '1', '--out', out
    ])
    figure = cv2.cvtColor(cv2.imread(out), cv2.COLOR_BGR2RGB)
    image_hw = (64, 96)  # 300x451 with the longer side at 96
    # Rows: stages 0 and 1; columns: the 2 heads of stage 1.
    assert figure.shape[:2] == grid_shape(image_hw, rows=2, cols=2)

    # The assignment of the same model on the same image, recorded here.
    image = resize_longer_side(skimage_data.chelsea(), 96)
    model = build_vis_backbone(parse_arch(ARCH), seed=1)
    with torch.no_grad(), record_cluster_assignments(model) as records:
        model(image_to_tensor(image))
    for row, (stage, name) in enumerate([(0, 'layers.0.blocks.0.attn'),
                                         (1, 'layers.1.blocks.0.attn')]):
        labels = records[name][0][0].numpy()  # (heads, h, w)
        palette = cluster_palette(int(labels.max()) + 1)
        stride = 4 * 2**stage
        for head in range(labels.shape[0]):
            y0, x0 = panel_origin(image_hw, row, head)
            panel = figure[y0:y0 + 64, x0:x0 + 96]
            # Token (i, j) is centred on pixel (stride*i, stride*j), which
            # is never a boundary pixel: it must show the cluster's colour.
            centres = panel[::stride, ::stride]
            np.testing.assert_array_equal(centres, palette[labels[head]])
            assert (panel == 255).all(-1).any()  # boundaries are drawn
    # Stage 0 has one head: the second column of its row stays empty.
    y0, x0 = panel_origin(image_hw, 0, 1)
    assert (figure[y0:y0 + 64, x0:x0 + 96] == 255).all()


def test_checkpoint_weights_give_the_clusters_drawn(vis_clusters, photo,
                                                    tmp_path, capsys):
    # A detector-style checkpoint ('state_dict' with 'backbone.' keys) of a
    # backbone initialised with another seed than the tool's default.
    torch.manual_seed(5)
    trained = SecViT(arch=parse_arch(ARCH))
    trained.init_weights()
    checkpoint = str(tmp_path / 'detector.pth')
    torch.save(
        dict(state_dict={
            f'backbone.{k}': v
            for k, v in trained.state_dict().items()
        }), checkpoint)
    out = str(tmp_path / 'clusters.png')
    vis_clusters['main']([
        photo, '--arch', ARCH, '--checkpoint', checkpoint, '--stage', '0',
        '--size', '96', '--alpha', '1', '--out', out
    ])
    assert 'random weights' not in capsys.readouterr().out

    image = resize_longer_side(skimage_data.chelsea(), 96)
    with torch.no_grad(), record_cluster_assignments(trained.eval()) as rec:
        trained(image_to_tensor(image))
    labels = rec['layers.0.blocks.0.attn'][0][0, 0].numpy()
    figure = cv2.cvtColor(cv2.imread(out), cv2.COLOR_BGR2RGB)
    y0, x0 = panel_origin((64, 96), 0, 0)
    centres = figure[y0:y0 + 64:4, x0:x0 + 96:4]
    np.testing.assert_array_equal(centres, cluster_palette(4)[labels])


def test_without_checkpoint_the_titles_say_random_weights(
        vis_clusters, photo, tmp_path, capsys):
    out = str(tmp_path / 'clusters.png')
    vis_clusters['main'](
        [photo, '--arch', ARCH, '--stage', '2', '--size', '64', '--out', out])
    assert 'random weights' in capsys.readouterr().out
    figure = cv2.imread(out)
    assert figure.shape[:2] == grid_shape((43, 64), rows=1, cols=4)


def test_missing_image_is_a_clear_error(vis_clusters, tmp_path):
    with pytest.raises(FileNotFoundError, match='No image'):
        vis_clusters['main']([str(tmp_path / 'nope.jpg')])
