# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/misc/gpu_check.py: the dry run on CPU, and how failures show."""
import importlib.util
import os.path as osp
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from mmsecvit.analysis import gpu_check
from mmsecvit.analysis.gpu_check import (CheckContext, CheckFailed,
                                         render_report, run_check, run_checks)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'gpu_check_tool', osp.join(REPO, 'tools/misc/gpu_check.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_dry_run_runs_cpu_checks_and_skips_cuda_ones(tmp_path):
    out = tmp_path / 'report.md'
    load_tool().main(
        ['--dry-run', '--out',
         str(out), '--work-dir',
         str(tmp_path / 'work')])
    report = out.read_text()
    statuses = {}
    for line in report.splitlines():
        for item in gpu_check.CHECKS:
            if line.startswith(f'## {item.title}: '):
                statuses[item.name] = line.rsplit(': ', 1)[1]
    assert statuses == {
        item.name: 'skipped' if item.needs_cuda else 'passed'
        for item in gpu_check.CHECKS
    }
    assert report.count('\nskipped: no CUDA\n') == sum(
        item.needs_cuda for item in gpu_check.CHECKS)
    assert '## What one GPU cannot check' in report
    assert 'NCCL with 2 or more ranks' in report


def test_failures_and_errors_are_reported(tmp_path, monkeypatch):

    def fails(ctx):
        raise CheckFailed('gradients differ by 1e-1')

    def crashes(ctx):
        raise KeyError('oops')

    checks = [
        gpu_check.Check('fails', 'A failing check', fails, False),
        gpu_check.Check('crashes', 'A crashing check', crashes, False),
        gpu_check.Check('cuda', 'A CUDA check', fails, True),
    ]
    monkeypatch.setattr(gpu_check, 'CHECKS', checks)
    ctx = CheckContext(device='cpu', work_dir=str(tmp_path), dry_run=True)
    results = run_checks(ctx)
    assert [r.status for r in results] == ['failed', 'failed', 'skipped']
    report = render_report(results, ctx, 'python tools/misc/gpu_check.py')
    assert 'gradients differ by 1e-1' in report
    assert "KeyError: 'oops'" in report
    with pytest.raises(SystemExit) as exit_info:
        load_tool().main([
            '--out',
            str(tmp_path / 'r.md'), '--work-dir',
            str(tmp_path), '--dry-run'
        ])
    assert exit_info.value.code == 1


def test_unknown_check_names_are_refused(tmp_path):
    ctx = CheckContext(device='cpu', work_dir=str(tmp_path), dry_run=True)
    with pytest.raises(ValueError, match='Unknown checks'):
        run_checks(ctx, ['nope'])


def _rank_1_skips_the_all_reduce(rank, ctx, init_file, out_dir):
    # Spawned ranks import this module by name: pytest puts its folder on
    # sys.path, which spawn passes on.
    dist.init_process_group(
        'gloo',
        init_method=f'file://{init_file}',
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=3600))
    if rank == 0:
        dist.all_reduce(torch.ones(1))
    else:
        time.sleep(3600)


def test_two_ranks_that_hang_fail_the_check(tmp_path, monkeypatch):
    """A rank that never joins a collective fails the two-rank check at
    ``ctx.timeout`` instead of hanging the check (and CI) for ever."""
    monkeypatch.setattr(gpu_check, '_two_ranks_worker',
                        _rank_1_skips_the_all_reduce)
    ctx = CheckContext(
        device='cpu', work_dir=str(tmp_path), dry_run=True, timeout=20)
    item = next(c for c in gpu_check.CHECKS if c.name == 'two_ranks_gloo')
    result = run_check(item, ctx)
    assert result.status == 'failed'
    assert 'The two ranks did not finish: ranks [0, 1] of 2 still ran' in \
        '\n'.join(result.lines)
