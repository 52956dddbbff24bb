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
    monkeypatch.setattr(
        sys, 'argv',
        [TOOL, '--archs',
         json.dumps(TEST_ARCH), '--size', '64x64'])
    runpy.run_path(TOOL, run_name='__main__')
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('| arch | input |')
    row = lines[2].split('|')
    assert float(row[4]) > float(row[5]) > 0  # with > without attention


def _model_count(capsys, *args):
    main = runpy.run_path(TOOL)['main']
    main([
        '--config',
        osp.join(REPO_ROOT, 'configs', 'demo',
                 'mask-rcnn_secvit-s_fpn_demo-coco.py'), '--size', '64x64',
        '--cfg-options', 'model.backbone.arch=t', *args
    ])
    return capsys.readouterr().out


def test_a_two_stage_detector_counts_the_same_every_run(capsys):
    """The RoI head's share depends on the proposals of the random model:
    the count seeds it (before, runs differed by a few percent)."""
    first = _model_count(capsys)
    assert 'total' in first
    assert _model_count(capsys) == first


def test_cluster_mode_reaches_the_configs_backbone(monkeypatch, capsys):
    from mmsecvit.analysis import flops
    seen = []
    model_flops = flops.model_flops

    def record(config, size, cfg_options=None, **kwargs):
        seen.append(dict(cfg_options))
        return model_flops(config, size, cfg_options, **kwargs)

    monkeypatch.setattr(flops, 'model_flops', record)
    main = runpy.run_path(TOOL)['main']
    config = osp.join(REPO_ROOT, 'configs', 'demo',
                      'retinanet_secvit-s_fpn_demo-coco.py')
    options = ['--cfg-options', 'model.backbone.arch=t']
    main(['--config', config, '--size', '64x64', *options])
    assert 'model.backbone.cluster_mode' not in seen[-1]
    main([
        '--config', config, '--size', '64x64', '--cluster-mode',
        'cluster_size', *options
    ])
    assert seen[-1]['model.backbone.cluster_mode'] == 'cluster_size'


def test_one_count_gives_the_total_without_attention(monkeypatch, capsys):
    """The tool builds and counts the model once; the figure without
    attention is exactly the count mmengine's counter gives on its own."""
    from mmsecvit.analysis import flops
    config = osp.join(REPO_ROOT, 'configs', 'demo',
                      'retinanet_secvit-s_fpn_demo-coco.py')
    options = {'model.backbone.arch': 't'}
    without = flops.model_flops(
        config, (64, 64), options, count_attention=False)['total']
    calls = []
    model_flops = flops.model_flops

    def record(*args, **kwargs):
        calls.append(model_flops(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(flops, 'model_flops', record)
    main = runpy.run_path(TOOL)['main']
    main([
        '--config', config, '--size', '64x64', '--cfg-options',
        'model.backbone.arch=t'
    ])
    assert len(calls) == 1
    assert calls[0]['total'] - calls[0]['attention'] == without
    assert calls[0]['attention'] > 0
    assert f'({without / 1e9:.1f} without attention' in \
        capsys.readouterr().out
