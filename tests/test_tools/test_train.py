# Copyright (c) mmsecvit contributors. All rights reserved.
import glob
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, TOOLS, run_tool, small_config


@pytest.fixture
def built_runners(monkeypatch):
    """The runners that ``Runner.from_cfg`` builds during the test."""
    from mmengine.runner import Runner
    runners = []
    from_cfg = Runner.from_cfg.__func__

    def capture(cls, cfg):
        runners.append(from_cfg(cls, cfg))
        return runners[-1]

    monkeypatch.setattr(Runner, 'from_cfg', classmethod(capture))
    return runners


@pytest.mark.parametrize('demo_config, metric_keys', [
    ('mask-rcnn_secvit-s_fpn_demo-coco.py',
     ('coco/bbox_mAP', 'coco/segm_mAP')),
    ('retinanet_secvit-s_fpn_demo-coco.py', ('coco/bbox_mAP', )),
    ('upernet_secvit-s_demo-ade.py', ('mIoU', )),
    ('cascade-mask-rcnn_secvit-s_fpn_demo-coco.py',
     ('coco/bbox_mAP', 'coco/segm_mAP')),
    ('fpn_secvit-s_demo-ade.py', ('mIoU', )),
    ('mask2former_secvit-s_demo-ade.py', ('mIoU', )),
    ('mask2former_secvit-s_demo-coco.py', ('coco/bbox_mAP', 'coco/segm_mAP')),
    ('dino-4scale_secvit-s_demo-coco.py', ('coco/bbox_mAP', )),
])
def test_train_runs_and_evaluates_demo_config(demo_config, metric_keys,
                                              demo_workspace, built_runners,
                                              tmp_path, monkeypatch):
    monkeypatch.chdir(demo_workspace)
    work_dir = str(tmp_path / 'work_dir')
    run_tool(monkeypatch, 'train.py', small_config(tmp_path, demo_config),
             '--work-dir', work_dir)
    assert len(built_runners) == 1
    # The message hub holds what the logger printed: the training losses
    # and the metrics of the validation at the end of the schedule.
    message_hub = built_runners[0].message_hub
    losses = message_hub.get_scalar('train/loss').data[0]
    assert len(losses) >= 1 and all(math.isfinite(loss) for loss in losses)
    for key in metric_keys:
        values = message_hub.get_scalar(f'val/{key}').data[0]
        assert len(values) == 1, 'validation ran once, at the end'
        assert 0 <= values[0] <= 100
    assert glob.glob(osp.join(work_dir, '*.pth')), 'a checkpoint was saved'


def test_missing_data_stops_before_the_model_is_built(tmp_path, monkeypatch):
    from mmengine.runner import Runner

    def fail(*args, **kwargs):
        raise AssertionError('the runner (and the model) must not be built')

    monkeypatch.setattr(Runner, 'from_cfg', fail)
    monkeypatch.chdir(tmp_path)  # no data/ here
    config = osp.join(REPO_ROOT, 'configs', 'demo',
                      'mask-rcnn_secvit-s_fpn_demo-coco.py')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, 'train.py', config, '--work-dir',
                 str(tmp_path / 'work_dir'))
    assert exit_info.value.code == 2


def test_missing_data_exits_with_one_clear_message(tmp_path):
    config = osp.join(REPO_ROOT, 'configs', 'demo',
                      'upernet_secvit-s_demo-ade.py')
    missing_root = tmp_path / 'nowhere' / 'ADEChallengeData2016'
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([
        sys.executable,
        osp.join(TOOLS, 'train.py'), config, '--work-dir',
        str(tmp_path / 'work_dir'), '--cfg-options',
        f'train_dataloader.dataset.data_root={missing_root}'
    ],
                            cwd=str(tmp_path),
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr + result.stdout
    assert 'Dataset not found' in result.stderr
    assert str(missing_root) in result.stderr
    assert 'ADE20K layout' in result.stderr
    assert 'make_demo_data.py' in result.stderr


def test_resume_from_a_missing_checkpoint_is_a_clear_error(
        demo_workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, 'train.py', config, '--resume',
                 str(tmp_path / 'missing.pth'))
    assert exit_info.value.code == 2
    assert 'missing.pth' in capsys.readouterr().err


def test_resume_with_other_optimizer_groups_is_a_clear_error(
        demo_workspace, tmp_path, monkeypatch, capsys):
    """A config changed since the checkpoint (here frozen_stages: fewer
    parameters to optimise, so fewer groups) cannot take its optimizer
    state; torch's ValueError from inside the Runner becomes one message
    that says what to do."""
    monkeypatch.chdir(demo_workspace)
    config = small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py')
    work_dir = str(tmp_path / 'work_dir')
    run_tool(monkeypatch, 'train.py', config, '--work-dir', work_dir)
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, 'train.py', config, '--work-dir', work_dir,
                 '--resume', '--cfg-options',
                 'model.backbone.frozen_stages=1')
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'does not fit the optimizer of this config' in err
    assert 'load_from=PATH (without --resume)' in err
