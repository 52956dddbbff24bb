# Copyright (c) mmsecvit contributors. All rights reserved.
import os.path as osp

import pytest
from mmengine.config import Config

from mmsecvit.engine.tool_config import (detect_codebase, enable_amp,
                                         enable_auto_scale_lr, enable_tta,
                                         enable_visualization, load_config,
                                         register_codebase,
                                         results_dump_metric, set_resume,
                                         set_seg_output_dir)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / 'my_config.py'
    path.write_text("optim_wrapper = dict(type='OptimWrapper', "
                    "optimizer=dict(type='SGD', lr=0.1))\n")
    return str(path)


def test_work_dir_comes_from_cli_then_config_then_file_name(config_file):
    cfg = load_config(config_file)
    assert cfg.work_dir == osp.join('./work_dirs', 'my_config')
    cfg = load_config(config_file, cfg_options=dict(work_dir='from_cfg'))
    assert cfg.work_dir == 'from_cfg'
    cfg = load_config(config_file, dict(work_dir='from_cfg'), 'from_cli')
    assert cfg.work_dir == 'from_cli'
    assert cfg.launcher == 'none'


def test_load_config_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(tmp_path / 'nope.py'))


@pytest.mark.parametrize('cfg, codebase', [
    (dict(default_scope='mmseg', model=dict(type='MaskRCNN')), 'mmseg'),
    (dict(model=dict(type='MaskRCNN')), 'mmdet'),
    (dict(model=dict(type='RetinaNet')), 'mmdet'),
    (dict(model=dict(type='EncoderDecoder')), 'mmseg'),
    (dict(model=dict(type='mmseg.MyOwnSegmentor')), 'mmseg'),
    (dict(
        model=dict(
            type='MyOwnDetector',
            data_preprocessor=dict(type='DetDataPreprocessor'))), 'mmdet'),
])
def test_codebase_from_scope_then_model_then_preprocessor(cfg, codebase):
    assert detect_codebase(Config(cfg)) == codebase


def test_unknown_codebase_says_how_to_fix():
    with pytest.raises(ValueError, match="default_scope = 'mmdet'"):
        detect_codebase(Config(dict(model=dict(type='MyOwnModel'))))


def test_register_codebase_sets_a_missing_default_scope():
    from mmdet.registry import MODELS
    cfg = Config(dict(model=dict(type='MaskRCNN')))
    assert register_codebase(cfg) == 'mmdet'
    assert cfg.default_scope == 'mmdet'
    assert 'MaskRCNN' in MODELS.module_dict


def test_amp_switches_to_amp_optim_wrapper_with_dynamic_loss_scale(
        config_file):
    cfg = load_config(config_file)
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg.optim_wrapper.type = 'SomethingElse'
    with pytest.raises(ValueError, match='SomethingElse'):
        enable_amp(cfg)


def test_amp_keeps_the_configs_own_amp_settings():
    """As mmdet's train.py: a config that is already AMP is left alone."""
    cfg = Config(
        dict(
            optim_wrapper=dict(
                type='AmpOptimWrapper', loss_scale=512.,
                optimizer=dict(type='SGD', lr=0.1))))
    enable_amp(cfg)
    assert cfg.optim_wrapper.loss_scale == 512.


def test_auto_scale_lr_needs_the_base_batch_size():
    cfg = Config(dict(auto_scale_lr=dict(enable=False, base_batch_size=16)))
    enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr.enable is True
    with pytest.raises(ValueError, match='base_batch_size'):
        enable_auto_scale_lr(Config(dict()))


def test_resume_without_path_resumes_from_the_work_dir(tmp_path):
    cfg = Config(dict(load_from='pretrained.pth'))
    set_resume(cfg, None)
    assert cfg.get('resume') is None and cfg.load_from == 'pretrained.pth'
    set_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from is None
    # Kept for a work dir without a checkpoint (see test_runtime).
    assert cfg.load_from_if_no_checkpoint == 'pretrained.pth'
    checkpoint = tmp_path / 'iter_10.pth'
    checkpoint.touch()
    set_resume(cfg, str(checkpoint))
    assert cfg.resume is True and cfg.load_from == str(checkpoint)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        set_resume(cfg, str(tmp_path / 'missing.pth'))


def test_det_tta_defaults_to_flip_and_wraps_the_model():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]
    cfg = Config(
        dict(
            model=dict(type='RetinaNet'),
            test_dataloader=dict(dataset=dict(pipeline=pipeline))))
    with pytest.warns(UserWarning):
        enable_tta(cfg, 'mmdet')
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.module.type == 'RetinaNet'
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    assert test_pipeline[0].type == 'LoadImageFromFile'
    assert test_pipeline[-1].type == 'TestTimeAug'


def test_seg_tta_uses_the_config_and_requires_it():
    cfg = Config(
        dict(
            model=dict(type='EncoderDecoder'),
            tta_model=dict(type='SegTTAModel'),
            tta_pipeline=[dict(type='LoadImageFromFile')],
            test_dataloader=dict(dataset=dict(pipeline=[]))))
    enable_tta(cfg, 'mmseg')
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    with pytest.raises(ValueError, match='tta_pipeline'):
        enable_tta(Config(dict(model=dict())), 'mmseg')


def test_show_dir_goes_where_each_codebase_reads_it():
    hooks = dict(visualization=dict(type='DetVisualizationHook'))
    cfg = Config(dict(default_hooks=hooks, visualizer=dict()))
    enable_visualization(cfg, 'mmdet', show_dir='shown')
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == 'shown'
    cfg = Config(dict(default_hooks=hooks, visualizer=dict()))
    enable_visualization(cfg, 'mmseg', show_dir='shown')
    assert cfg.visualizer.save_dir == 'shown'
    with pytest.raises(ValueError, match='SegVisualizationHook'):
        enable_visualization(
            Config(dict(default_hooks=dict())), 'mmseg', show_dir='x')


def test_outputs_of_test_tool():
    cfg = Config(dict(test_evaluator=dict(type='IoUMetric')))
    set_seg_output_dir(cfg, 'preds')
    assert cfg.test_evaluator.output_dir == 'preds'
    assert cfg.test_evaluator.keep_results is True
    assert type(results_dump_metric('mmdet', 'r.pkl')).__name__ == \
        'DumpDetResults'
    assert type(results_dump_metric('mmseg', 'r.pkl')).__name__ == \
        'DumpResults'
    with pytest.raises(ValueError, match='.pkl'):
        results_dump_metric('mmdet', 'results.json')
