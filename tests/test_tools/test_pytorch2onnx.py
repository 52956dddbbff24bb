# Copyright (c) mmsecvit contributors. All rights reserved.
import os
import os.path as osp
import runpy

import pytest
import torch
from conftest import TOOLS, small_config

from mmsecvit.engine.cli import DEBUG_ENV, run_tool

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def tool():
    return runpy.run_path(
        osp.join(TOOLS, 'deployment', 'pytorch2onnx.py'),
        run_name='pytorch2onnx')


def test_exports_and_verifies_a_backbone(tool, tmp_path, capsys):
    config = small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py')
    out = str(tmp_path / 'backbone.onnx')
    assert tool['main']([
        config, '--backbone-only', '--shape', '64', '96', '--dynamic',
        '--cluster-mode', 'cluster_size', '--out', out
    ]) == 0
    printed = capsys.readouterr().out
    assert osp.isfile(out)
    assert printed.count('-> ok') == 3, printed


def test_a_model_that_cannot_export_gets_an_error_naming_the_op(
        tool, tmp_path, capsys):
    config = small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool['main'], [config, '--out', str(tmp_path / 'x.onnx')])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert 'NMSop' in error and 'Traceback' not in error


@pytest.mark.parametrize('shape', [['64'], ['64', '0'], ['64', 'wide']])
def test_a_wrong_shape_is_a_usage_error(tool, tmp_path, shape, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool['parse_args'](['c.py', '--out', 'x.onnx', '--shape', *shape])
    assert exit_info.value.code == 2
    assert 'usage' in capsys.readouterr().err


def test_a_missing_config_and_weights_of_another_model(tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool['main'],
                 [str(tmp_path / 'nowhere.py'), '--out', 'x.onnx'])
    assert exit_info.value.code == 2
    assert 'Config file not found' in capsys.readouterr().err
    weights = tmp_path / 'other.pth'
    torch.save({'state_dict': {
        'backbone.other.weight': torch.zeros(2)
    }}, str(weights))
    config = small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool['main'], [
            config, '--backbone-only', '--weights',
            str(weights), '--out',
            str(tmp_path / 'x.onnx')
        ])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert 'does not fit the model' in error and 'Traceback' not in error


def test_debug_is_accepted(tool, monkeypatch):
    # The option sets the environment variable (for the whole process):
    # monkeypatch puts it back as it was.
    monkeypatch.setenv(DEBUG_ENV, '0')
    tool['parse_args'](['c.py', '--out', 'x.onnx', '--debug'])
    assert os.environ[DEBUG_ENV] == '1'
