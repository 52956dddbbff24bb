# Copyright (c) mmsecvit contributors. All rights reserved.
"""Check that the installed OpenMMLab libraries are ones mmsecvit supports.

Runs when ``mmsecvit`` is imported, before anything registers with the
libraries, so that a mismatch fails with a message saying what to install
rather than with an obscure error deep inside mmcv or mmdet.
"""
import re
from importlib import metadata
from typing import Dict, Optional, Tuple

from .errors import UnsupportedVersionError

# package name (as pip knows it) -> (lowest supported, first unsupported).
# mmcv 2.2.0 is excluded because mmdet 3.x and mmseg 1.x refuse it.
SUPPORTED_VERSIONS: Dict[str, Tuple[str, str]] = {
    'mmcv': ('2.0.0rc4', '2.2.0'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmdet': ('3.0.0', '3.4.0'),
    'mmsegmentation': ('1.0.0', '1.3.0'),
}
# Needed to import mmsecvit; the others only by their own configs and tools.
REQUIRED_PACKAGES = ('mmcv', 'mmengine')
#: The oldest torch whose APIs mmsecvit calls: ``add_safe_globals`` with
#: ``(object, name)`` pairs (2.6; loading MMEngine checkpoints safely, e.g.
#: to resume: torch 2.5 refuses them), ``torch.serialization.safe_globals``
#: (2.5), ``torch.is_autocast_enabled(device_type)`` (2.4),
#: ``torch.compiler.is_compiling`` (2.3). The test suite ran on 2.6.0 and
#: 2.13.0 (:data:`TESTED_VERSIONS`).
MIN_TORCH_VERSION = '2.6.0'
TESTED_VERSIONS = {
    'torch': '2.13.0',
    'mmcv': '2.1.0',
    'mmengine': '0.10.7',
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
}


def installed_versions() -> Dict[str, Optional[str]]:
    """Versions of the checked packages as pip recorded them.

    Returns:
        dict[str, str | None]: ``None`` for a package that is not installed.
    """
    versions = {}
    for name in ('torch', *SUPPORTED_VERSIONS):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_versions(versions: Optional[Dict[str, Optional[str]]] = None
                   ) -> None:
    """Raise if an installed library is outside the supported range.

    Args:
        versions (dict[str, str | None], optional): Package name to installed
            version (``None`` = not installed). Defaults to what
            :func:`installed_versions` finds; tests pass fake versions.

    Raises:
        ImportError: A required package (mmcv, mmengine) is missing, or any
            installed package has an unsupported version. The message names
            the installed version, the supported range and how to fix it.
    """
    if versions is None:
        versions = installed_versions()
    problems = []
    for name, (lowest, first_unsupported) in SUPPORTED_VERSIONS.items():
        version = versions.get(name)
        supported = f'>={lowest},<{first_unsupported}'
        if version is None:
            if name in REQUIRED_PACKAGES:
                problems.append(f'{name} is not installed (mmsecvit needs '
                                f'{name}{supported}).')
            continue
        # Imported here: with mmengine missing the check must still report.
        from mmengine.utils import digit_version
        if not (digit_version(lowest) <= digit_version(version) <
                digit_version(first_unsupported)):
            problems.append(f'{name}=={version} is installed, but mmsecvit '
                            f'supports {name}{supported}.')
    torch_problem = _check_torch(versions.get('torch', _UNCHECKED))
    if torch_problem and not problems:
        raise UnsupportedVersionError(
            f'mmsecvit cannot run with the installed torch:\n  '
            f'{torch_problem}')
    if torch_problem:
        problems.insert(0, torch_problem)
    if problems:
        tested = ', '.join(f'{k}=={v}' for k, v in TESTED_VERSIONS.items())
        raise UnsupportedVersionError(
            'mmsecvit cannot run with the installed libraries:\n  ' +
            '\n  '.join(problems) +
            f'\nTo fix it, run `bash tools/install.sh` in the mmsecvit '
            f'checkout, or install the tested set yourself: {tested} '
            '(mmcv built with its ops, see README "Installation").')


# Fake version sets of tests may leave torch out: not checked then.
_UNCHECKED = object()


def _check_torch(version) -> Optional[str]:
    """The problem with the installed torch, or None. The installer keeps
    an installed torch (a CUDA build the user chose), so the fix is to
    install a newer one first."""
    if version is _UNCHECKED:
        return None
    fix = ('install torch>={0} first (the build for your CUDA driver, e.g. '
           '`pip install torch==2.13.0 --index-url '
           'https://download.pytorch.org/whl/cu128`; see README '
           '"Installation"), then run `bash tools/install.sh` again, which '
           'builds mmcv against it.').format(MIN_TORCH_VERSION)
    if version is None:
        return f'torch is not installed: {fix}'
    # By the release numbers alone: pre-release builds of a supported
    # version (e.g. NVIDIA's containers' '2.6.0a0+...') have its APIs.
    if _release(version) < _release(MIN_TORCH_VERSION):
        return (f'torch=={version} is installed, but mmsecvit needs '
                f'torch>={MIN_TORCH_VERSION}: {fix}')
    return None


def _release(version: str) -> Tuple[int, ...]:
    """(major, minor, patch) of a version string, e.g. (2, 5, 0) for
    '2.5.0a0+git1234' or '2.5.0+cu121'."""
    numbers = re.match(r'\d+(\.\d+)*', version)
    if numbers is None:
        return ()
    parts = tuple(int(part) for part in numbers.group(0).split('.'))
    return (parts + (0, 0, 0))[:3]
