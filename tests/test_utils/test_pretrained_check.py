# Copyright (c) mmsecvit contributors. All rights reserved.
from pathlib import Path

import pytest
from mmengine.config import Config

from mmsecvit.utils import PretrainedNotFoundError, check_pretrained_paths

REPO = Path(__file__).resolve().parents[2]


def config_with(checkpoint):
    return Config(
        dict(
            model=dict(
                type='MaskRCNN',
                backbone=dict(
                    type='mmsecvit.SecViT',
                    init_cfg=dict(type='Pretrained',
                                  checkpoint=checkpoint)),
                neck=dict(init_cfg=[dict(type='Xavier', layer='Conv2d')]))))


def test_missing_local_checkpoint_is_named_with_the_fixes(tmp_path):
    missing = tmp_path / 'secvit_s_in1k.pth'
    with pytest.raises(PretrainedNotFoundError) as info:
        check_pretrained_paths(config_with(str(missing)))
    message = str(info.value)
    assert str(missing) in message
    assert 'model.backbone.init_cfg.checkpoint=' in message
    assert 'model.backbone.init_cfg=None' in message
    assert 'MMSECVIT_PRETRAINED_DIR' in message


def test_existing_file_urls_and_no_pretrained_pass(tmp_path):
    present = tmp_path / 'weights.pth'
    present.write_bytes(b'x')
    check_pretrained_paths(config_with(str(present)))
    check_pretrained_paths(config_with('https://example.org/w.pth'))
    check_pretrained_paths(Config(dict(model=dict(type='X', init_cfg=None))))


def test_the_real_entry_config_is_checked(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/maskrcnn_secvit_s.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'none.pth')
    with pytest.raises(PretrainedNotFoundError, match='none.pth'):
        check_pretrained_paths(cfg)
