# Copyright (c) mmsecvit contributors. All rights reserved.
"""The supported ranges live in three places (the import-time guard, the
requirements files and the installer); they must not drift apart."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from mmsecvit.utils.version_check import (MIN_TORCH_VERSION,
                                          SUPPORTED_VERSIONS, TESTED_VERSIONS)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
pytestmark = pytest.mark.skipif(
    not osp.isfile(osp.join(REPO_ROOT, 'setup.py')),
    reason='needs the source checkout')


def _requirements(name):
    with open(osp.join(REPO_ROOT, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith('-')]


def _read(path):
    with open(osp.join(REPO_ROOT, path)) as f:
        return f.read()


@pytest.mark.parametrize('name,file', [
    ('mmcv', 'mminstall'),
    ('mmengine', 'mminstall'),
    ('mmengine', 'runtime'),
    ('mmdet', 'optional'),
    ('mmsegmentation', 'optional'),
])
def test_requirement_files_state_the_guarded_range(name, file):
    lowest, first_unsupported = SUPPORTED_VERSIONS[name]
    assert f'{name}>={lowest},<{first_unsupported}' in _requirements(file)


def test_installer_pins_the_tested_versions():
    script = _read('tools/install.sh')
    for name, version in TESTED_VERSIONS.items():
        if name == 'mmcv':
            assert f'MMCV_VERSION="{version}"' in script
        else:
            assert f'{name}=={version}' in script


def test_installer_checks_the_guarded_ranges():
    script = _read('tools/install.sh')
    for name in ('mmengine', 'mmdet', 'mmsegmentation'):
        lowest, first_unsupported = SUPPORTED_VERSIONS[name]
        assert f'"{name}>={lowest},<{first_unsupported}"' in script


def test_installer_refuses_a_torch_older_than_the_guard_does():
    # It keeps an installed torch; an older one than import accepts must
    # stop it before it compiles mmcv against that torch.
    script = _read('tools/install.sh')
    assert f'MIN_TORCH="torch>={MIN_TORCH_VERSION}.dev0"' in script
    assert 'unmet "$MIN_TORCH"' in script


def test_torch_is_never_an_install_requirement():
    # An unpinned torch from pip resolves to a multi-GB CUDA build.
    for file in ('runtime', 'optional', 'tests', 'mminstall', 'build'):
        names = [re.split(r'[<>=!~;\[ ]', r)[0] for r in _requirements(file)]
        assert 'torch' not in names, file


def test_onnx_packages_are_optional_and_installed_for_the_tests():
    # `pip install mmsecvit` stays without them; install.sh installs the
    # optional file always and the tests file with --tests.
    for name in ('onnx', 'onnxruntime'):
        assert name not in _requirements('runtime')
        assert name in _requirements('optional')
        assert name in _requirements('tests')
    script = _read('tools/install.sh')
    assert 'requirements/optional.txt' in script
    assert 'requirements/tests.txt' in script


def test_installer_stops_at_an_old_torch_before_building_anything(tmp_path):
    # A torch 2.1.2 as pip records it, found before the real one.
    info = tmp_path / 'torch-2.1.2.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: torch\nVersion: 2.1.2\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHON=sys.executable)
    result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools',
                                              'install.sh')],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'the installed torch (2.1.2) is too old' in result.stderr
    assert 'mmcv' not in result.stdout.replace('mmsecvit', '')
