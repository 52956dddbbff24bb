# Copyright (c) mmsecvit contributors. All rights reserved.
"""Packaging for mmsecvit.

``pip install .`` installs the package with its configs and tools under
``mmsecvit/.mim`` so that ``mim`` finds them outside the checkout.
torch and mmcv are not installed from here on purpose: see
``requirements/runtime.txt`` and ``tools/install.sh``.
"""
import os
import os.path as osp
import platform
import shutil
import sys
import warnings

from setuptools import find_packages, setup

REPO_ROOT = osp.dirname(osp.abspath(__file__))

# Shipped inside the package so that mim can find them after a non-editable
# install.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def readme():
    with open(osp.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    """Read ``__version__`` without importing the package (its imports need
    torch and mmcv, which may not be installed yet)."""
    namespace = {}
    with open(osp.join(REPO_ROOT, 'mmsecvit', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), namespace)
    return namespace['__version__']


def parse_requirements(name):
    """Requirement strings of ``requirements/<name>.txt``.

    Comments and blank lines are skipped; ``-r other.txt`` lines are
    followed so that a file may include another.

    Args:
        name (str): File name without the ``.txt`` suffix.

    Returns:
        list[str]: One requirement specifier per item, e.g.
        ``'mmengine>=0.10.0,<1.0.0'``.
    """
    path = osp.join(REPO_ROOT, 'requirements', f'{name}.txt')
    requirements = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                included = osp.splitext(osp.basename(line[3:].strip()))[0]
                requirements.extend(parse_requirements(included))
            else:
                requirements.append(line)
    return requirements


def add_mim_extension():
    """Put configs and tools into ``mmsecvit/.mim``.

    An editable install links them (edits in the checkout show up at once);
    building a wheel or sdist copies them so that they travel with the
    package. Other setup.py commands (e.g. ``egg_info``) leave ``.mim``
    alone.

    Returns:
        list[str]: Names whose links to the checkout were replaced by copies.
        Pass them to :func:`restore_mim_links` once the build is done, so
        that an editable install of the same checkout keeps seeing live
        configs instead of stale copies.
    """
    replaced_links = []
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'copy' if platform.system() == 'Windows' else 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return replaced_links

    mim_path = osp.join(REPO_ROOT, 'mmsecvit', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src_path = osp.join(REPO_ROOT, name)
        tar_path = osp.join(mim_path, name)
        if not osp.exists(src_path):
            continue
        if osp.islink(tar_path) or osp.isfile(tar_path):
            if osp.islink(tar_path) and mode == 'copy':
                replaced_links.append(name)
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)

        if mode == 'symlink':
            os.symlink(osp.relpath(src_path, mim_path), tar_path)
        elif osp.isfile(src_path):
            shutil.copyfile(src_path, tar_path)
        elif osp.isdir(src_path):
            shutil.copytree(
                src_path,
                tar_path,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            warnings.warn(f'Cannot copy {src_path} into {mim_path}.')
    return replaced_links


def restore_mim_links(names):
    """Turn the copies made for a wheel back into links to the checkout."""
    mim_path = osp.join(REPO_ROOT, 'mmsecvit', '.mim')
    for name in names:
        tar_path = osp.join(mim_path, name)
        if osp.isdir(tar_path) and not osp.islink(tar_path):
            shutil.rmtree(tar_path)
        elif osp.lexists(tar_path):
            os.remove(tar_path)
        os.symlink(osp.relpath(osp.join(REPO_ROOT, name), mim_path), tar_path)


if __name__ == '__main__':
    replaced_links = add_mim_extension()
    setup(
        name='mmsecvit',
        version=get_version(),
        description='SecViT (Semantic Equitable Clustering ViT) backbone '
        'for MMDetection and MMSegmentation',
        long_description=readme(),
        long_description_content_type='text/markdown',
        author='mmsecvit contributors',
        keywords='computer vision, vision transformer, clustering attention, '
        'object detection, instance segmentation, semantic segmentation',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
        include_package_data=True,
        python_requires='>=3.8',
        classifiers=[
            'Development Status :: 3 - Alpha',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.8',
            'Programming Language :: Python :: 3.9',
            'Programming Language :: Python :: 3.10',
            'Programming Language :: Python :: 3.11',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        install_requires=parse_requirements('runtime'),
        extras_require={
            'all': parse_requirements('runtime') +
            parse_requirements('optional') + parse_requirements('tests'),
            'build': parse_requirements('build'),
            'mim': parse_requirements('mminstall'),
            'optional': parse_requirements('optional'),
            'tests': parse_requirements('tests'),
        },
        zip_safe=False)
    restore_mim_links(replaced_links)
