# Copyright (c) mmsecvit contributors. All rights reserved.
"""Every mistake a user can make ends in one message and exit code 2, run
as from a shell: no traceback (issue #15)."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, TOOLS, small_config

from mmsecvit.engine.cli import DEBUG_ENV
from mmsecvit.models import SecViT
from mmsecvit.testing.archs import TEST_ARCH, arch_with

RETINANET = 'retinanet_secvit-s_fpn_demo-coco.py'


def run(tool: str, *args: str, cwd=None, debug: bool = False):
    """Run ``tools/<tool>`` in a fresh Python, as a user would."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1')
    env.pop(DEBUG_ENV, None)
    if debug:
        env[DEBUG_ENV] = '1'
    return subprocess.run([sys.executable,
                           osp.join(TOOLS, tool), *args],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)


def train_small_retinanet(workspace, tmp_path, *args: str):
    """``tools/train.py`` on the small demo RetinaNet with ``args``, in
    ``tmp_path/work_dir``, as from a shell in ``workspace``."""
    return run(
        'train.py',
        small_config(tmp_path, RETINANET),
        '--work-dir',
        str(tmp_path / 'work_dir'),
        *args,
        cwd=workspace)


def assert_one_clear_message(result, *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert 'Traceback' not in output
    for fragment in fragments:
        assert fragment in result.stderr, output


@pytest.fixture(scope='module')
def corrupt_checkpoint(tmp_path_factory):
    """A checkpoint cut in half, as by an interrupted copy."""
    path = tmp_path_factory.mktemp('checkpoints') / 'epoch_1.pth'
    torch.save({'state_dict': {'weight': torch.zeros(4096)}}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return str(path)


@pytest.fixture(scope='module')
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('files') / 'notes.jpg'
    path.write_text('not an image\n')
    return str(path)


def test_train_corrupt_load_from(demo_workspace, tmp_path,
                                 corrupt_checkpoint):
    result = train_small_retinanet(demo_workspace, tmp_path, '--cfg-options',
                                   f'load_from={corrupt_checkpoint}')
    assert_one_clear_message(result, 'train.py: error: Checkpoint file',
                             corrupt_checkpoint, 'truncated or corrupt',
                             'download/copy the file again')


def test_train_resume_from_a_corrupt_checkpoint(demo_workspace, tmp_path,
                                                corrupt_checkpoint):
    result = train_small_retinanet(demo_workspace, tmp_path, '--resume',
                                   corrupt_checkpoint)
    assert_one_clear_message(result, corrupt_checkpoint,
                             'truncated or corrupt')


def test_train_unknown_arch_raised_inside_the_registry(
        demo_workspace, tmp_path):
    result = train_small_retinanet(demo_workspace, tmp_path, '--cfg-options',
                                   'model.backbone.arch=huge')
    assert_one_clear_message(result, "Unknown SecViT arch 'huge'",
                             "['b', 'base', 'l', 'large'")


def test_out_of_range_out_indices(tmp_path):
    config = osp.join(REPO_ROOT, 'configs', 'demo', RETINANET)
    result = run('analysis_tools/get_flops.py', '--config', config,
                 '--size', '64', '--cfg-options',
                 'model.backbone.out_indices=(1,2,7)')
    assert_one_clear_message(result, 'out_indices must lie in [0, 4), got 7')


def test_test_missing_checkpoint(demo_workspace, tmp_path):
    result = run(
        'test.py',
        small_config(tmp_path, RETINANET),
        str(tmp_path / 'epoch_12.pth'),
        cwd=demo_workspace)
    assert_one_clear_message(result, 'test.py: error: Checkpoint not found',
                             'epoch_12.pth')


@pytest.fixture(scope='module')
def backbone_checkpoints(tmp_path_factory):
    """Two checkpoints that load without error but fit no small demo
    model: a bare backbone (no ``backbone.`` prefix), and a detector's
    backbone of other widths."""
    directory = tmp_path_factory.mktemp('checkpoints')
    bare = SecViT(arch=TEST_ARCH).state_dict()
    wide = SecViT(arch=arch_with(embed_dims=[64, 128, 256, 512])).state_dict()
    paths = (str(directory / 'in1k.pth'), str(directory / 'wide.pth'))
    torch.save(dict(state_dict=bare), paths[0])
    torch.save(
        dict(state_dict={f'backbone.{k}': v
                         for k, v in wide.items()}), paths[1])
    return paths


def test_test_a_checkpoint_of_another_model(demo_workspace, tmp_path,
                                            backbone_checkpoints):
    """Before, MMEngine warned of every tensor and evaluated random
    weights to an mAP of 0 with exit code 0."""
    bare, wide = backbone_checkpoints
    for checkpoint in (bare, wide):
        result = run(
            'test.py',
            small_config(tmp_path, RETINANET),
            checkpoint,
            cwd=demo_workspace)
        assert_one_clear_message(result, 'test.py: error: The checkpoint',
                                 checkpoint, 'does not fit the model',
                                 'model tensors missing')
    assert 'backbone.patch_embed.proj.0.weight: checkpoint (32, 3, 3, 3) ' \
        'vs model (16, 3, 3, 3)' in result.stderr


def test_train_load_from_and_resume_of_another_model(demo_workspace, tmp_path,
                                                     backbone_checkpoints):
    bare, wide = backbone_checkpoints
    result = train_small_retinanet(demo_workspace, tmp_path, '--cfg-options',
                                   f'load_from={bare}')
    assert_one_clear_message(result, 'model tensors missing',
                             "model.backbone.init_cfg=dict(type='Pretrained'")
    result = train_small_retinanet(demo_workspace, tmp_path, '--cfg-options',
                                   f'load_from={wide}')
    assert_one_clear_message(result, 'tensors with other shapes',
                             'backbone.patch_embed.proj.0.weight')
    result = train_small_retinanet(demo_workspace, tmp_path, '--resume',
                                   wide)
    assert_one_clear_message(result, 'does not fit the model',
                             'model tensors missing')


def test_image_demo_with_weights_of_another_model(tmp_path,
                                                  backbone_checkpoints):
    """Refused before the inferencer loads them: no warning of every
    tensor first, no picture of what random layers predict."""
    image = str(tmp_path / 'grey.jpg')
    cv2.imwrite(image, np.full((64, 96, 3), 127, np.uint8))
    wide = backbone_checkpoints[1]
    out_dir = str(tmp_path / 'outputs')
    result = run('demo/image_demo.py', image,
                 small_config(tmp_path, RETINANET), '--weights', wide,
                 '--out-dir', out_dir)
    assert_one_clear_message(result, 'image_demo.py: error: The checkpoint',
                             wide, 'tensors with other shapes')
    assert 'do not match' not in result.stdout + result.stderr
    assert not osp.exists(out_dir)


def test_image_demo_on_a_file_that_is_not_an_image(text_file):
    config = osp.join(REPO_ROOT, 'configs', 'demo', RETINANET)
    result = run('demo/image_demo.py', text_file, config)
    assert_one_clear_message(result, 'image_demo.py: error:', text_file,
                             'is not an image that can be read')


def test_debug_shows_the_traceback_of_a_user_error(text_file):
    config = osp.join(REPO_ROOT, 'configs', 'demo', RETINANET)
    for result in (run('demo/image_demo.py', text_file, config, '--debug'),
                   run('demo/image_demo.py', text_file, config,
                       debug=True)):
        assert result.returncode == 1
        assert 'Traceback' in result.stderr
        assert 'UnreadableImageError' in result.stderr


def test_converter_missing_and_corrupt_source(tmp_path, corrupt_checkpoint):
    converter = 'model_converters/secvit2mmsecvit.py'
    missing = str(tmp_path / 'SecViT_S.pth')
    result = run(converter, missing, str(tmp_path / 'out.pth'))
    assert_one_clear_message(result, 'secvit2mmsecvit.py: error: No '
                             'checkpoint at', missing)
    result = run(converter, corrupt_checkpoint, str(tmp_path / 'out.pth'))
    assert_one_clear_message(result, 'truncated or corrupt')
    assert not (tmp_path / 'out.pth').exists()


@pytest.mark.parametrize('tool, args, fragments', [
    ('analysis_tools/get_flops.py', ['--size', '12x'],
     ["argument --size: Bad input size '12x'"]),
    ('analysis_tools/get_flops.py', ['--archs', 'huge', '--size', '64'],
     ["argument --archs: Unknown SecViT arch 'huge'"]),
    ('analysis_tools/get_flops.py', ['--archs', '{"depths": [1,'],
     ["argument --archs: Cannot read the arch"]),
    ('analysis_tools/benchmark.py', ['--rounds', '0'],
     ['benchmark.py: error: rounds must be >= 1, got 0.']),
    ('analysis_tools/benchmark.py', ['--device', 'cuda:7'],
     ["argument --device: Device 'cuda:7' asked for"]),
    ('misc/make_demo_data.py', ['--num-train', '0'],
     ['num_train and num_val must be at least 1']),
    ('misc/print_config.py', ['nowhere.py'],
     ['Config file not found: nowhere.py']),
])
def test_bad_option_values(tool, args, fragments, tmp_path):
    if tool.endswith('benchmark.py'):
        args += ['--out', str(tmp_path / 'table.md'), '--plot', '']
    if tool.endswith('make_demo_data.py'):
        args += ['--out', str(tmp_path / 'demo')]
    assert_one_clear_message(run(tool, *args, cwd=str(tmp_path)), *fragments)


def test_compile_check_unknown_arch():
    result = run('analysis_tools/compile_check.py', '--arch', 'huge',
                 '--backend', 'aot_eager')
    assert_one_clear_message(result, 'compile_check.py: error:',
                             "Unknown SecViT arch 'huge'")


def test_test_tta_of_an_instance_segmentation_model(demo_workspace, tmp_path):
    """Refused before the runner is built; before, mmdet's DetTTAModel
    asserted after the whole inference."""
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {}}, str(checkpoint))
    result = run(
        'test.py',
        small_config(tmp_path, 'mask-rcnn_secvit-s_fpn_demo-coco.py'),
        str(checkpoint),
        '--tta',
        cwd=demo_workspace)
    assert_one_clear_message(result, '--tta:', 'refuses instance masks',
                             'roi_head.mask_head')


def test_config_mistakes(demo_workspace, tmp_path):
    broken = tmp_path / 'broken.py'
    broken.write_text("_base_ = ['./no_such_base.py']\n")
    assert_one_clear_message(
        run('train.py', str(broken), cwd=demo_workspace),
        'inherits a file that does not exist', 'no_such_base.py')
    config = small_config(tmp_path, RETINANET)
    # A dict onto the demo's init_cfg=None.
    assert_one_clear_message(
        run('train.py', config, '--cfg-options',
            'model.backbone.init_cfg.checkpoint=x.pth',
            cwd=demo_workspace), '--cfg-options cannot be merged',
        '_delete_=True')
    assert_one_clear_message(
        train_small_retinanet(demo_workspace, tmp_path, '--cfg-options',
                              'model.backbone.with_cpp=True'),
        "unexpected keyword argument 'with_cpp'", 'Check the spelling')


def test_out_indices_that_the_neck_does_not_take(demo_workspace, tmp_path):
    """Before, mmdet's FPN failed its bare assert at the first step."""
    result = train_small_retinanet(demo_workspace, tmp_path, '--cfg-options',
                                   'model.backbone.out_indices=3')
    assert_one_clear_message(result, 'model.neck.in_channels=',
                             'do not match the backbone')
