# Copyright (c) mmsecvit contributors. All rights reserved.
"""Every module of the package imports, so a broken import in a module that
no other test touches still fails the suite."""
import importlib
import pkgutil

import pytest

import mmsecvit


def _all_module_names():
    names = []

    def fail(name):
        raise ImportError(f'cannot import package {name}')

    for info in pkgutil.walk_packages(mmsecvit.__path__, 'mmsecvit.',
                                      onerror=fail):
        names.append(info.name)
    return sorted(names)


MODULE_NAMES = _all_module_names()


def test_package_has_the_documented_layout():
    for name in ('mmsecvit.registry', 'mmsecvit.version',
                 'mmsecvit.models.backbones', 'mmsecvit.engine',
                 'mmsecvit.engine.preflight', 'mmsecvit.engine.tool_config',
                 'mmsecvit.analysis.benchmark', 'mmsecvit.analysis.flops',
                 'mmsecvit.testing.archs',
                 'mmsecvit.testing.reference_attention', 'mmsecvit.utils',
                 'mmsecvit.utils.fileio', 'mmsecvit.utils.collect_env',
                 'mmsecvit.utils.version_check'):
        assert name in MODULE_NAMES


@pytest.mark.parametrize('name', MODULE_NAMES)
def test_module_imports(name):
    importlib.import_module(name)


def test_version_is_exposed_and_parsed():
    assert isinstance(mmsecvit.__version__, str)
    assert mmsecvit.version_info[:3] == tuple(
        int(x) for x in mmsecvit.__version__.split('.')[:3])
