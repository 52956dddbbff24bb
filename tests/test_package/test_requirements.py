# Copyright (c) mmsecvit contributors. All rights reserved.
"""The supported ranges live in three places (the import-time guard, the
requirements files and the installer); they must not drift apart."""
import os.path as osp
import re

import pytest

from mmsecvit.utils.version_check import SUPPORTED_VERSIONS, TESTED_VERSIONS

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
