# Copyright (c) mmsecvit contributors. All rights reserved.
import os.path as osp
import runpy

import cv2
import pytest
import torch
from conftest import TOOLS, small_config
from mmengine.registry import MODELS, init_default_scope
from skimage import data as skimage_data


@pytest.fixture(scope='module')
def image_demo():
    """The tool's functions, loaded as a module."""
    return runpy.run_path(
        osp.join(TOOLS, 'demo', 'image_demo.py'), run_name='image_demo')


@pytest.fixture
def photo(tmp_path):
    """scikit-image's coffee cup, shrunk to 96x64."""
    path = str(tmp_path / 'coffee.jpg')
    image = cv2.resize(skimage_data.coffee(), (96, 64))
    cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.parametrize(
    'demo_config',
    ['mask-rcnn_secvit-s_fpn_demo-coco.py', 'upernet_secvit-s_demo-ade.py'])
def test_demo_draws_the_result_of_a_demo_config(image_demo, demo_config, photo,
                                                tmp_path):
    config = small_config(tmp_path, demo_config)
    out_dir = str(tmp_path / 'outputs')
    out_file = image_demo['main']([photo, config, '--out-dir', out_dir])
    assert out_file == osp.join(out_dir, 'vis', 'coffee.jpg')
    drawn = cv2.imread(out_file)
    assert drawn is not None and drawn.shape[:2] == (64, 96)


def test_demo_with_the_weights_of_its_model(image_demo, photo, tmp_path):
    # The weights are checked against the model built on the meta device
    # before the inferencer loads them; a fitting checkpoint passes.
    config = small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py')
    cfg = image_demo['load_config'](config)
    init_default_scope('mmdet')
    state = MODELS.build(cfg.model).state_dict()
    weights = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': state, 'meta': {}}, weights)
    image_demo['check_weights'](cfg, weights)
    out_dir = str(tmp_path / 'outputs')
    image_demo['main'](
        [photo, config, '--weights', weights, '--out-dir', out_dir])
    assert cv2.imread(osp.join(out_dir, 'vis', 'coffee.jpg')) is not None


def test_demo_takes_class_names_from_the_config(image_demo, tmp_path):
    config = small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py')
    cfg = image_demo['load_config'](config)
    assert cfg.model.backbone.init_cfg is None
    classes = image_demo['config_metainfo'](cfg)['classes']
    assert tuple(classes) == ('circle', 'square', 'triangle')


def test_demo_refuses_a_config_of_another_codebase(image_demo, tmp_path):
    config = tmp_path / 'other.py'
    config.write_text("default_scope = 'mmpretrain'\nmodel = dict()\n")
    with pytest.raises(ValueError, match='mmdet or mmseg'):
        image_demo['load_config'](str(config))
