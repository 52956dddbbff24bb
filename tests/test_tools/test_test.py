# Copyright (c) mmsecvit contributors. All rights reserved.
import glob
import json
import os.path as osp
import pickle

import pytest
import torch
from conftest import run_tool, small_config
from mmengine.registry import DefaultScope

from mmsecvit.engine.tool_config import load_config, register_codebase


def untrained_checkpoint(config: str, path: str) -> str:
    """Save the freshly initialised model of ``config`` as a checkpoint."""
    cfg = load_config(config)
    codebase = register_codebase(cfg)
    if codebase == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(codebase):
        model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def logged_test_metrics(work_dir):
    """The metrics that the test run wrote to ``<timestamp>.json``."""
    paths = glob.glob(osp.join(work_dir, '*', '*.json'))
    assert len(paths) == 1
    with open(paths[0]) as f:
        return json.load(f)


def test_writes_detection_results_and_metrics(demo_workspace, tmp_path,
                                              monkeypatch):
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py')
    checkpoint = untrained_checkpoint(config, str(tmp_path / 'model.pth'))
    out = str(tmp_path / 'results.pkl')
    work_dir = str(tmp_path / 'work_dir')
    run_tool(monkeypatch, 'test.py', config, checkpoint, '--out', out,
             '--work-dir', work_dir)
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 1  # one validation image
    assert len(results[0]['pred_instances']['bboxes']) > 0
    metrics = logged_test_metrics(work_dir)
    assert 0 <= metrics['coco/bbox_mAP'] <= 1


def test_writes_segmentation_maps_and_metrics(demo_workspace, tmp_path,
                                              monkeypatch):
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, 'upernet_secvit-s_demo-ade.py')
    checkpoint = untrained_checkpoint(config, str(tmp_path / 'model.pth'))
    out_dir = tmp_path / 'predictions'
    work_dir = str(tmp_path / 'work_dir')
    run_tool(monkeypatch, 'test.py', config, checkpoint, '--out',
             str(out_dir), '--work-dir', work_dir)
    assert [p.name for p in out_dir.glob('*.png')] == [
        'ADE_val_00000001.png'
    ]
    metrics = logged_test_metrics(work_dir)
    assert 0 <= metrics['mIoU'] <= 100


def test_rejects_a_detection_output_that_is_not_a_pickle(
        demo_workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py')
    checkpoint = tmp_path / 'model.pth'
    checkpoint.touch()
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, 'test.py', config, str(checkpoint), '--out',
                 str(tmp_path / 'results.json'))
    assert exit_info.value.code == 2
    assert '--out must be a .pkl or .pickle file' in capsys.readouterr().err


@pytest.mark.parametrize(
    'demo_config',
    ['retinanet_secvit-s_fpn_demo-coco.py', 'upernet_secvit-s_demo-ade.py'])
def test_tta_takes_the_checkpoint_of_the_model_it_wraps(
        demo_config, demo_workspace, tmp_path, monkeypatch):
    """The TTA model's own keys start with 'module.'; the checkpoint's are
    the wrapped model's (before, the check refused every checkpoint)."""
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, demo_config)
    checkpoint = untrained_checkpoint(config, str(tmp_path / 'model.pth'))
    work_dir = str(tmp_path / 'work_dir')
    run_tool(monkeypatch, 'test.py', config, checkpoint, '--tta',
             '--work-dir', work_dir)
    metrics = logged_test_metrics(work_dir)
    assert ('coco/bbox_mAP' in metrics) or ('mIoU' in metrics)


def test_a_config_saved_by_a_resumed_run_tests_its_weights(
        demo_workspace, tmp_path, monkeypatch):
    """The config a resumed run dumps into its work dir has resume=True;
    test.py loads the weights only (before, a weights-only checkpoint was
    refused as one to resume from, and a full one resumed the training
    state, building the train data)."""
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py')
    checkpoint = untrained_checkpoint(config, str(tmp_path / 'model.pth'))
    dumped = tmp_path / 'dumped_by_a_resumed_run.py'
    dumped.write_text(f'_base_ = {config!r}\nresume = True\n'
                      f"load_from_if_no_checkpoint = 'initial.pth'\n"
                      "train_dataloader = dict(dataset=dict("
                      "data_root='/nonexistent'))\n")
    work_dir = str(tmp_path / 'work_dir')
    run_tool(monkeypatch, 'test.py', str(dumped), checkpoint, '--work-dir',
             work_dir)
    assert 'coco/bbox_mAP' in logged_test_metrics(work_dir)
