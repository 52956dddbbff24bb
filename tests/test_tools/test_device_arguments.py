# Copyright (c) mmsecvit contributors. All rights reserved.
"""Every tool with ``--device`` refuses a device the machine lacks with
one message and exit code 2 (argparse), not a traceback from deep inside
torch once the work has started."""
import glob
import os.path as osp
import runpy

import pytest
import torch
from conftest import TOOLS

#: Positional arguments the tools need before their options.
POSITIONALS = {
    'vis_clusters.py': ['image.png'],
    'image_demo.py': ['image.png', 'config.py'],
}


def _tools_with_a_device_option():
    paths = glob.glob(osp.join(TOOLS, '*', '*.py'))
    return sorted(
        osp.relpath(path, TOOLS) for path in paths
        if "'--device'" in open(path).read()
        or 'add_device_arguments(' in open(path).read())


def test_the_tools_are_found():
    assert len(_tools_with_a_device_option()) >= 7


@pytest.mark.parametrize('tool', _tools_with_a_device_option())
def test_a_missing_gpu_is_refused_with_one_message(tool, monkeypatch,
                                                   capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    parse_args = runpy.run_path(osp.join(TOOLS, tool))['parse_args']
    argv = POSITIONALS.get(osp.basename(tool), []) + ['--device', 'cuda']
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert 'finds no CUDA GPU' in capsys.readouterr().err
