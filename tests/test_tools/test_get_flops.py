# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/analysis_tools/get_flops.py prints a table of the backbones."""
import json
import os.path as osp
import runpy
import sys

from mmsecvit.testing import TEST_ARCH

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'get_flops.py')


def test_tool_prints_a_table_for_the_backbones(capsys, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [
        TOOL, '--archs', json.dumps(TEST_ARCH), '--size', '64x64'])
    runpy.run_path(TOOL, run_name='__main__')
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('| arch | input |')
    row = lines[2].split('|')
    assert float(row[4]) > float(row[5]) > 0  # with > without attention
