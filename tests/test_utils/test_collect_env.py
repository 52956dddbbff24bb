# Copyright (c) mmsecvit contributors. All rights reserved.
import os
import os.path as osp
import subprocess
import sys

import mmcv
import torch

import mmsecvit
from mmsecvit.utils.collect_env import collect_env


def test_collect_env_reports_the_stack():
    env = collect_env()
    assert env['PyTorch'] == torch.__version__
    assert env['MMCV'] == mmcv.__version__
    assert env['MMSecViT'].startswith(mmsecvit.__version__)
    assert env['MMCV ops compiled'] == 'yes'
    for key in ('CUDA available', 'MMEngine', 'MMCV CUDA Compiler',
                'MMDetection', 'MMSegmentation'):
        assert key in env


def test_collect_env_runs_as_a_module(tmp_path):
    # Run from elsewhere, on the same package this test imported.
    repo_parent = osp.dirname(osp.dirname(osp.abspath(mmsecvit.__file__)))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (repo_parent, env.get('PYTHONPATH')) if p)
    result = subprocess.run(
        [sys.executable, '-m', 'mmsecvit.utils.collect_env'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr
    assert f'PyTorch: {torch.__version__}' in result.stdout
    assert f'MMCV: {mmcv.__version__}' in result.stdout
    assert 'MMCV ops compiled: yes' in result.stdout
