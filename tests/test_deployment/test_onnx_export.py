# Copyright (c) mmsecvit contributors. All rights reserved.
"""ONNX export of SecViT backbones and detectors, checked with ONNX
Runtime at several input sizes."""
import importlib.util
import os.path as osp
import warnings

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from mmsecvit.deployment import onnx_export
from mmsecvit.deployment.onnx_export import (ExportError, build_export_model,
                                             cluster_order_session,
                                             export_onnx, near_tie,
                                             verification_inputs, verify_onnx)
from mmsecvit.models import SecViT
from mmsecvit.models.layers import sec_attention
from mmsecvit.testing import TEST_ARCH, randomize_weights

pytest.importorskip('onnxruntime')

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool_test_helpers():
    # By file and under a name of its own: ``import conftest`` finds
    # whichever conftest module was imported first (tests/conftest.py when
    # this directory is run alone).
    path = osp.join(REPO_ROOT, 'tests', 'test_tools', 'conftest.py')
    spec = importlib.util.spec_from_file_location('tool_test_helpers', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


small_config = _load_tool_test_helpers().small_config


def small_backbone(mode):
    model = SecViT(arch=TEST_ARCH, cluster_mode=mode, cluster_size=20)
    return randomize_weights(model, seed=0).eval()


@pytest.mark.parametrize('mode', ['num_clusters', 'cluster_size'])
def test_backbone_export_matches_pytorch_at_other_sizes(
        mode, tmp_path, monkeypatch):
    model = small_backbone(mode)
    path = str(tmp_path / 'secvit.onnx')
    names = export_onnx(model, path, (64, 96))
    assert names == ['out0', 'out1', 'out2', 'out3']
    cases = verification_inputs(model, (64, 96), dynamic=True)
    # The export size, batch 2 at another size, a shorter last cluster.
    assert cases[0] == (1, 64, 96) and cases[1][0] == 2
    batch, h, w = cases[2]
    tokens = -(-h // 4) * -(-w // 4)
    length = -(-tokens // 4) if mode == 'num_clusters' else 20
    assert tokens % length
    checks = verify_onnx(model, path, cases)
    assert all(check.passed for check in checks), checks
    assert max(check.max_abs_diff for check in checks) < 1e-4
    # verify_onnx makes PyTorch cluster as the graph ranks, which would
    # hide a wrong ranking in the graph: without those rankings, PyTorch
    # ranks on its own (inputs with near-ties are redrawn).
    monkeypatch.setattr(onnx_export, 'cluster_order_session',
                        lambda model, path: None)
    checks = verify_onnx(model, path, cases)
    assert all(check.passed for check in checks), checks


def test_cluster_size_export_is_global_where_tokens_are_few(tmp_path):
    # 32x32 has 64 tokens in stage 0 (4 clusters of 20), 16 in stage 1 (one
    # cluster: global attention), after an export at 64x96 (384 tokens).
    model = small_backbone('cluster_size')
    path = str(tmp_path / 'secvit.onnx')
    export_onnx(model, path, (64, 96))
    assert verify_onnx(model, path, [(1, 32, 32)])[0].passed


def test_static_export_takes_only_its_size(tmp_path):
    model = small_backbone('num_clusters')
    path = str(tmp_path / 'secvit.onnx')
    export_onnx(model, path, (64, 64), dynamic=False)
    assert verification_inputs(model, (64, 64), dynamic=False) == [(1, 64, 64)]
    assert verify_onnx(model, path, [(1, 64, 64)])[0].passed
    with pytest.raises(Exception, match='[Gg]ot'):
        verify_onnx(model, path, [(1, 64, 96)])


def test_verification_catches_a_wrong_graph(tmp_path):
    model = small_backbone('num_clusters')
    path = str(tmp_path / 'secvit.onnx')
    export_onnx(model, path, (64, 64))
    with torch.no_grad():
        model.norm0.norm.bias += 1
    assert not verify_onnx(model, path, [(1, 64, 64)])[0].passed


def test_verification_clusters_as_onnx_runtime_ranks(monkeypatch, tmp_path):
    # Where two correct implementations rank a near-tie differently, their
    # clusters differ. Simulated here by a PyTorch whose ranking moves the
    # last token of each cluster to the next one, after the export.
    model = small_backbone('num_clusters')
    path = str(tmp_path / 'secvit.onnx')
    export_onnx(model, path, (64, 96))
    ordered = cluster_order_session(model, path)
    assert ordered.modules == [f'layers.{i}.blocks.0.attn' for i in range(3)]
    rank = sec_attention.sec_order
    monkeypatch.setattr(sec_attention, 'sec_order',
                        lambda k: rank(k).roll(1, dims=-1))
    cases = [(1, 64, 96), (2, 68, 100)]
    assert all(check.passed and not check.redraws
               for check in verify_onnx(model, path, cases, max_redraws=0))
    # Without ONNX Runtime's rankings the same check fails.
    monkeypatch.setattr(onnx_export, 'cluster_order_session',
                        lambda model, path: None)
    assert not any(check.passed
                   for check in verify_onnx(model, path, cases,
                                            max_redraws=0))


def test_without_rankings_a_mismatch_on_a_near_tie_redraws_the_input(
        monkeypatch, tmp_path):
    model = small_backbone('num_clusters')
    path = str(tmp_path / 'secvit.onnx')
    export_onnx(model, path, (32, 32), dynamic=False)
    monkeypatch.setattr(onnx_export, 'cluster_order_session',
                        lambda model, path: None)
    results = iter([(1.0, False), (1e-6, True)])
    monkeypatch.setattr(onnx_export, '_compare', lambda *args: next(results))
    monkeypatch.setattr(onnx_export, 'near_tie', lambda model, x: True)
    check, = verify_onnx(model, path, [(1, 32, 32)])
    assert check.passed and check.redraws == 1
    assert 'near-ties redrawn' in str(check)


def test_near_tie_compares_float32_and_float64_clusters(monkeypatch):
    model = small_backbone('num_clusters')
    x = torch.randn(1, 3, 32, 32)
    assert not near_tie(model, x)
    # A float64 run that ranks otherwise (here: other weights) is what a
    # token on a cluster boundary looks like.
    other = small_backbone('num_clusters')
    randomize_weights(other, seed=1)
    monkeypatch.setattr(onnx_export.copy, 'deepcopy', lambda module: other)
    assert near_tie(model, x)


def test_retinanet_exports_whole_with_dynamic_size(tmp_path):
    config = small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py')
    model = build_export_model(config, cluster_mode='cluster_size')
    assert model.model.backbone.layers[0].blocks[0].attn.cluster_mode == \
        'cluster_size'
    path = str(tmp_path / 'retinanet.onnx')
    names = export_onnx(model, path, (64, 96))
    # cls_scores and bbox_preds of the 5 FPN levels.
    assert names[0] == 'output0_0' and len(names) == 10
    # The rankings of the whole model's backbone are found by module path.
    assert cluster_order_session(model, path).modules == [
        f'model.backbone.layers.{i}.blocks.0.attn' for i in range(3)
    ]
    checks = verify_onnx(model, path,
                         verification_inputs(model, (64, 96), True))
    assert all(check.passed for check in checks), checks


def test_upernet_exports_at_a_fixed_size_its_pooling_divides(tmp_path):
    config = small_config(tmp_path, 'upernet_secvit-s_demo-ade.py')
    model = build_export_model(config)
    path = str(tmp_path / 'upernet.onnx')
    # The pyramid pooling (1, 2, 3, 6 cells) of the 1/32 map: 6x6 divides.
    assert export_onnx(model, path, (192, 192), dynamic=False) == ['output']
    assert verify_onnx(model, path, [(1, 192, 192)])[0].passed
    with pytest.raises(ExportError, match='adaptive_avg_pool2d.*--dynamic'):
        export_onnx(model, path, (192, 192), dynamic=True)


def test_two_stage_detector_is_refused_naming_the_ops(tmp_path):
    config = small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py')
    with pytest.raises(ExportError, match='NMSop.*RoIAlign.*--backbone-only'):
        build_export_model(config)
    backbone = build_export_model(config, backbone_only=True)
    assert isinstance(backbone, SecViT) and not backbone.training


def test_backbone_weights_come_from_the_checkpoint(tmp_path):
    config = Config.fromfile(
        small_config(tmp_path, 'retinanet_secvit-s_fpn_demo-coco.py'))
    model = build_export_model(config)
    state = {
        k: v + 1
        for k, v in model.model.state_dict().items() if v.is_floating_point()
    }
    torch.save({'state_dict': state}, str(tmp_path / 'weights.pth'))
    loaded = build_export_model(
        config, weights=str(tmp_path / 'weights.pth'), backbone_only=True)
    torch.testing.assert_close(loaded.norm1.norm.weight,
                               state['backbone.norm1.norm.weight'])


class _ComplexOp(nn.Module):

    def forward(self, x):
        return torch.view_as_real(torch.complex(x, x))


def test_unsupported_operator_gets_an_error_naming_it(tmp_path, capfd):
    with pytest.raises(ExportError, match='operator aten::complex'):
        export_onnx(_ComplexOp().eval(), str(tmp_path / 'x.onnx'), (4, 4))
    # Only the message: not torch's dump of the graph (written to the
    # process's stdout by C++), and the exporter's log stays off.
    captured = capfd.readouterr()
    assert 'IR graph' not in captured.out + captured.err
    assert not torch._C._jit_is_onnx_log_enabled()


def test_onnx_log_switched_on_by_the_user_still_logs(tmp_path, capfd):
    torch._C._jit_set_onnx_log_enabled(True)
    try:
        with pytest.raises(ExportError):
            export_onnx(_ComplexOp().eval(), str(tmp_path / 'x.onnx'), (4, 4))
        assert torch._C._jit_is_onnx_log_enabled()
    finally:
        torch._C._jit_set_onnx_log_enabled(False)
    assert 'IR graph at exception' in capfd.readouterr().out


def test_export_records_no_size_as_a_constant(tmp_path):
    # The tracer warns where Python turns a traced size into a constant
    # ("the trace might not generalize"). The eager-only fast paths must
    # decide from the capture flags first, not from a traced size.
    model = small_backbone('num_clusters')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        export_onnx(model, str(tmp_path / 'secvit.onnx'), (64, 96))
    ours = [
        f'{osp.relpath(w.filename, REPO_ROOT)}:{w.lineno}: {w.message}'
        for w in caught if issubclass(w.category, torch.jit.TracerWarning)
        and osp.join(REPO_ROOT, 'mmsecvit') in osp.abspath(w.filename)
    ]
    assert not ours, '\n'.join(ours)
