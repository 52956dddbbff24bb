# Copyright (c) mmsecvit contributors. All rights reserved.
"""The launch scripts pass every argument through as one word: paths with
spaces, and train.py/test.py options (stand-ins for srun and python print
what they are given)."""
import os
import os.path as osp
import subprocess

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools')

pytestmark = pytest.mark.skipif(
    not osp.isdir(TOOLS), reason='needs the checkout')

# Prints each argument in brackets, one per line.
PRINT_ARGS = """#!/usr/bin/env bash
for arg in "$@"; do echo "[$arg]"; done
"""


def _run(tmp_path, script, *args, **env):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name in ('srun', 'python'):
        fake = bin_dir / name
        fake.write_text(PRINT_ARGS)
        fake.chmod(0o755)
    environ = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', **env)
    environ.pop('PYTHON', None)
    result = subprocess.run(['bash', osp.join(TOOLS, script), *args],
                            env=environ,
                            capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_slurm_train_keeps_paths_and_options_whole(tmp_path):
    args = _run(
        tmp_path,
        'slurm_train.sh',
        'part',
        'my job',
        'configs/my cfg.py',
        '/tmp/work dir',
        '--cfg-options',
        'model.backbone.arch=tiny',
        '--resume',
        SRUN_ARGS='--signal=USR1@120 -x node1')
    assert '[--job-name=my job]' in args
    # SRUN_ARGS: several srun options.
    assert ['[--signal=USR1@120]', '[-x]', '[node1]'] == args[8:11]
    assert args[-6:] == [
        '[configs/my cfg.py]', '[--work-dir=/tmp/work dir]',
        '[--launcher=slurm]', '[--cfg-options]', '[model.backbone.arch=tiny]',
        '[--resume]'
    ]


def test_slurm_test_keeps_paths_whole(tmp_path):
    args = _run(tmp_path, 'slurm_test.sh', 'part', 'job', 'configs/my cfg.py',
                '/ck/my ckpt.pth', '--out', 'out dir/r.pkl')
    assert args[-5:] == [
        '[configs/my cfg.py]', '[/ck/my ckpt.pth]', '[--launcher=slurm]',
        '[--out]', '[out dir/r.pkl]'
    ]


@pytest.mark.parametrize('script, args, expected', [
    ('dist_train.sh', ['configs/my cfg.py', '2', '--amp'],
     ['[configs/my cfg.py]', '[--launcher]', '[pytorch]', '[--amp]']),
    ('dist_test.sh', ['configs/my cfg.py', '/ck/my ckpt.pth', '2', '--tta'], [
        '[configs/my cfg.py]', '[/ck/my ckpt.pth]', '[--launcher]',
        '[pytorch]', '[--tta]'
    ]),
])
def test_dist_scripts_keep_paths_whole(tmp_path, script, args, expected):
    printed = _run(tmp_path, script, *args)
    assert printed[:2] == ['[-m]', '[torch.distributed.run]']
    assert '[--nproc_per_node=2]' in printed
    assert printed[-len(expected):] == expected
