# Copyright (c) mmsecvit contributors. All rights reserved.
import subprocess
import sys

import pytest

from mmsecvit.utils.version_check import (MIN_TORCH_VERSION,
                                          SUPPORTED_VERSIONS, check_versions,
                                          installed_versions)

GOOD = {
    'mmcv': '2.1.0',
    'mmengine': '0.10.7',
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
}


def test_installed_versions_pass():
    # Importing mmsecvit already ran the check; this states it explicitly.
    versions = installed_versions()
    assert versions['mmcv'] is not None
    assert versions['mmengine'] is not None
    check_versions(versions)


def test_tested_versions_pass():
    check_versions(GOOD)


def test_optional_downstream_libraries_may_be_missing():
    check_versions(dict(GOOD, mmdet=None))
    check_versions(dict(GOOD, mmsegmentation=None))


@pytest.mark.parametrize('name,version', [
    ('mmcv', '2.2.0'),
    ('mmcv', '1.7.2'),
    ('mmengine', '0.9.1'),
    ('mmdet', '3.4.0'),
    ('mmdet', '2.28.2'),
    ('mmsegmentation', '1.3.0'),
    ('mmsegmentation', '0.30.0'),
])
def test_unsupported_version_names_version_range_and_fix(name, version):
    with pytest.raises(ImportError) as error:
        check_versions(dict(GOOD, **{name: version}))
    message = str(error.value)
    lowest, first_unsupported = SUPPORTED_VERSIONS[name]
    assert f'{name}=={version} is installed' in message
    assert f'{name}>={lowest},<{first_unsupported}' in message
    assert 'tools/install.sh' in message


def test_lowest_supported_prerelease_passes():
    check_versions(dict(GOOD, mmcv='2.0.0rc4'))


@pytest.mark.parametrize('name', ['mmcv', 'mmengine'])
def test_missing_required_library_is_reported(name):
    with pytest.raises(ImportError, match=f'{name} is not installed'):
        check_versions(dict(GOOD, **{name: None}))


def test_all_problems_are_reported_together():
    with pytest.raises(ImportError) as error:
        check_versions(dict(GOOD, mmcv='2.2.0', mmdet='3.4.0'))
    assert 'mmcv==2.2.0' in str(error.value)
    assert 'mmdet==3.4.0' in str(error.value)


@pytest.mark.parametrize('version', ['2.13.0+cpu', '2.6.0',
                                     '2.6.0a0+ecf3bae40a.nv25.01'])
def test_supported_torch_passes(version):
    check_versions(dict(GOOD, torch=version))


def test_old_torch_names_the_minimum_and_how_to_install_it():
    with pytest.raises(ImportError) as error:
        check_versions(dict(GOOD, torch='2.1.2+cu121'))
    message = str(error.value)
    assert f'torch==2.1.2+cu121 is installed, but mmsecvit needs ' \
        f'torch>={MIN_TORCH_VERSION}' in message
    # The installer keeps an installed torch: it is not the whole fix.
    assert 'install torch>=' in message and 'first' in message
    assert 'the tested set' not in message
    with pytest.raises(ImportError, match='torch is not installed'):
        check_versions(dict(GOOD, torch=None))


# What `import mmsecvit` does on a torch older than the minimum, simulated:
# the installed version as pip recorded it, and no add_safe_globals (< 2.4).
_OLD_TORCH_IMPORT = """
from importlib import metadata
import torch
real_version = metadata.version
metadata.version = lambda name: ('2.1.2' if name == 'torch'
                                 else real_version(name))
del torch.serialization.add_safe_globals
try:
    import mmsecvit
except ImportError as error:
    print('refused:', error)
"""


def test_importing_with_an_old_torch_fails_with_the_version_message():
    result = subprocess.run([sys.executable, '-c', _OLD_TORCH_IMPORT],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'refused: mmsecvit cannot run with the installed torch' in \
        result.stdout
    assert 'torch==2.1.2 is installed' in result.stdout
