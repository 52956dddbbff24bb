# Copyright (c) mmsecvit contributors. All rights reserved.
"""Report the environment mmsecvit runs in (paste it into bug reports).

Run it with ``python -m mmsecvit.utils.collect_env`` or
``python tools/misc/collect_env.py``.
"""
import os.path as osp
import subprocess
from collections import OrderedDict
from importlib import import_module
from importlib.util import find_spec

from mmengine.utils.dl_utils import collect_env as collect_base_env


def _module_version(name: str) -> str:
    try:
        return import_module(name).__version__
    except ImportError:
        return 'not installed'


def _mmsecvit_package() -> tuple:
    """The directory and version of the mmsecvit that python imports.

    Read from ``version.py`` as setup.py does: ``mmsecvit.utils`` sits below
    the package and must not import it.
    """
    package_dir = osp.dirname(osp.abspath(find_spec('mmsecvit').origin))
    namespace = {}
    with open(osp.join(package_dir, 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), namespace)
    return package_dir, namespace['__version__']


def _mmsecvit_version() -> str:
    """The version, plus the commit when running from a git checkout (an
    installed wheel has no git history and reports the version alone)."""
    package_dir, version = _mmsecvit_package()
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short=7', 'HEAD'],
                                cwd=package_dir,
                                capture_output=True,
                                text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return version
    if commit.returncode != 0:
        return version
    return f'{version}+{commit.stdout.strip()}'


def _mmcv_ops_info() -> 'OrderedDict[str, str]':
    """Whether mmcv's compiled ops load, and what they were compiled with.

    A pure-python mmcv (``mmcv-lite`` or a build without ``MMCV_WITH_OPS``)
    imports fine but fails later in RoIAlign/NMS; this makes it visible.
    """
    info = OrderedDict()
    try:
        from mmcv.ops import nms  # noqa: F401  (the op the detectors need)
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version
    except (ImportError, OSError) as e:
        # OSError: the extension exists but was built for another torch.
        info['MMCV ops compiled'] = f'no ({type(e).__name__}: {e})'
        return info
    info['MMCV ops compiled'] = 'yes'
    info['MMCV Compiler'] = get_compiler_version()
    info['MMCV CUDA Compiler'] = get_compiling_cuda_version()
    return info


def collect_env() -> 'OrderedDict[str, str]':
    """Collect versions of the stack and how mmcv was built.

    Returns:
        OrderedDict: MMEngine's environment report (Python, CUDA, GCC,
        PyTorch, ...) plus the keys ``MMCV``, ``MMCV ops compiled``,
        ``MMCV Compiler``, ``MMCV CUDA Compiler`` (when the ops load),
        ``MMDetection``, ``MMSegmentation`` and ``MMSecViT``.
    """
    env_info = collect_base_env()
    env_info['MMCV'] = _module_version('mmcv')
    env_info.update(_mmcv_ops_info())
    env_info['MMDetection'] = _module_version('mmdet')
    env_info['MMSegmentation'] = _module_version('mmseg')
    env_info['MMSecViT'] = _mmsecvit_version()
    return env_info


def main() -> None:
    for name, value in collect_env().items():
        print(f'{name}: {value}')


if __name__ == '__main__':
    main()
