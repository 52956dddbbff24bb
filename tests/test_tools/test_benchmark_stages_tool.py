# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/analysis_tools/benchmark_stages.py prints the part table of SecViT
and Swin-T (no timing asserts)."""
import os.path as osp
import runpy

import pytest

from mmsecvit.utils.errors import ConfigValueError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'benchmark_stages.py')


def test_tool_prints_the_table_for_secvit_and_swin(capsys):
    main = runpy.run_path(TOOL)['main']
    main(['--arch', 'test', '--size', '64x64', '--warmup', '0',
          '--repeats', '1', '--limit-size', '64'])
    out = capsys.readouterr().out
    assert '64x64, batch 1, cpu,' in out
    assert 'medians of 1 forwards' in out
    assert 'secvit-c cluster_size fast / swin-t' in out
    for row in ('stem', 'stage 1', 'stage 4', 'outside the parts',
                'whole forward'):
        assert f'| {row} |' in out
    assert 'fp32 limit' in out


def test_tool_times_secvit_alone_with_no_swin(capsys):
    main = runpy.run_path(TOOL)['main']
    main(['--arch', 'test', '--size', '32x48', '--warmup', '0',
          '--repeats', '1', '--limit-size', '0', '--no-swin',
          '--mode', 'num_clusters'])
    out = capsys.readouterr().out
    assert 'swin' not in out
    assert out.splitlines()[1] == (
        '| part | secvit-c num_clusters fast ms | GMACs | GMAC/s |')


def test_a_bad_batch_is_refused():
    main = runpy.run_path(TOOL)['main']
    with pytest.raises(ConfigValueError, match='--batch must be at least 1'):
        main(['--arch', 'test', '--batch', '0'])
