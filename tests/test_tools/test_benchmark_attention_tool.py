# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/analysis_tools/benchmark_attention.py prints the shapes and the
table (no timing asserts)."""
import os.path as osp
import runpy

import pytest

from mmsecvit.utils.errors import ConfigValueError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools',
                'benchmark_attention.py')


def test_tool_prints_the_table(capsys):
    main = runpy.run_path(TOOL)['main']
    main(['--arch', 'test', '--size', '64x64', '--repeats', '1',
          '--limit-size', '64', '--dtype', 'float64'])
    out = capsys.readouterr().out
    assert '4 attention shapes, 4 calls per forward' in out
    assert 'fp32 limit (64x64 matrix product)' in out
    # One total row per kernel (sdpa and explicit by default).
    assert out.count('| all |') == 2
    assert 'failed' not in out


def test_a_bad_size_is_refused_with_its_message(capsys):
    main = runpy.run_path(TOOL)['main']
    with pytest.raises(SystemExit):
        main(['--size', '800by1333'])
    assert "Bad input size '800by1333'" in capsys.readouterr().err


def test_a_bad_batch_is_refused():
    main = runpy.run_path(TOOL)['main']
    with pytest.raises(ConfigValueError, match='--batch must be at least 1'):
        main(['--arch', 'test', '--batch', '0'])
