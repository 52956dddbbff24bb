# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py writes a table and a plot (no timing
asserts)."""
import json
import os.path as osp
import runpy
import sys

import pytest

from mmsecvit.testing import TEST_ARCH

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'benchmark.py')


def test_tool_writes_a_table_comparing_fast_and_reference(
        tmp_path, monkeypatch):
    out = tmp_path / 'table.md'
    plot = tmp_path / 'plot.png'
    monkeypatch.setattr(sys, 'argv', [
        TOOL, '--archs', json.dumps(TEST_ARCH), '--sizes', '40x56',
        '--modes', 'num_clusters', '--no-swin', '--warmup', '0',
        '--repeats', '1', '--out', str(out), '--plot', str(plot)
    ])
    runpy.run_path(TOOL, run_name='__main__')
    rows = [line for line in out.read_text().splitlines()
            if line.startswith('| infer')]
    assert len(rows) == 2
    assert 'num_clusters fast' in rows[0]
    assert 'num_clusters reference' in rows[1]
    assert 'failed' not in out.read_text()
    # The reference row reports how far its attention is from the fast one.
    diff = float(rows[1].strip('| ').split('|')[-1])
    assert diff < 1e-4
    assert plot.stat().st_size > 0


def _infer_rows(tmp_path, monkeypatch, *options):
    """Run the tool on the test arch at 40x56 in cluster-size mode without
    Swin-T, with ``options``; return the inference rows of its table."""
    out = tmp_path / 'table.md'
    monkeypatch.setattr(sys, 'argv', [
        TOOL, '--archs', json.dumps(TEST_ARCH), '--sizes', '40x56',
        '--modes', 'cluster_size', '--no-swin', '--warmup', '0',
        '--out', str(out), '--plot', '', *options
    ])
    runpy.run_path(TOOL, run_name='__main__')
    assert 'failed' not in out.read_text()
    return [line for line in out.read_text().splitlines()
            if line.startswith('| infer')]


def test_onnxruntime_rows_follow_the_eager_rows(tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime')
    rows = _infer_rows(tmp_path, monkeypatch, '--impls', 'fast',
                       '--runtime', 'onnxruntime', '--repeats', '1')
    assert len(rows) == 2
    assert rows[0].split('|')[4].strip() == 'secvit-c cluster_size fast'
    assert 'cluster_size fast onnxruntime' in rows[1]


def test_alternate_measures_the_rows_of_a_size_in_one_process(
        tmp_path, monkeypatch):
    """--alternate: one measuring process per task and size, the rows
    taking turns; the CPU memory column reads n/a."""
    rows = _infer_rows(tmp_path, monkeypatch, '--impls', 'fast', 'sdpa',
                       '--alternate', '--repeats', '2', '--no-macs')
    assert len(rows) == 2
    assert 'cluster_size fast' in rows[0] and 'cluster_size sdpa' in rows[1]
    assert all(row.split('|')[12].strip() == 'n/a' for row in rows)
