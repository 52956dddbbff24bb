# Copyright (c) mmsecvit contributors. All rights reserved.
"""Every package imports only from the floors below it, without cycles and
without function-level imports of its own modules (docs/layout.md)."""
import ast
import os.path as osp
from pathlib import Path

import pytest

import mmsecvit

PACKAGE_DIR = Path(osp.dirname(osp.abspath(mmsecvit.__file__)))
# A package may import from its own floor only within itself.
FLOORS = {
    'mmsecvit.utils': 0,
    'mmsecvit.version': 0,
    'mmsecvit.registry': 1,
    'mmsecvit.models': 2,
    'mmsecvit.datasets': 2,
    'mmsecvit.testing': 3,
    'mmsecvit.visualization': 3,
    'mmsecvit.deployment': 3,
    'mmsecvit.engine': 4,
    'mmsecvit.analysis': 4,
    'mmsecvit': 5,
}
# (importing module, imported module): why the import sits in a function.
# Only to keep ``import mmsecvit`` light; none is needed today.
FUNCTION_LEVEL_ALLOWED = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE_DIR.rglob('*.py'))
}


def is_package(name: str) -> bool:
    return MODULES[name].name == '__init__.py'


def resolve(module: str, node: ast.AST) -> list:
    """The mmsecvit modules an import statement of ``module`` imports."""
    if isinstance(node, ast.Import):
        bases = [alias.name for alias in node.names]
        names = [None] * len(bases)
    else:
        base = node.module or ''
        if node.level:
            package = module if is_package(module) else \
                module.rpartition('.')[0]
            for _ in range(node.level - 1):
                package = package.rpartition('.')[0]
            base = f'{package}.{base}' if base else package
        bases = [base] * len(node.names)
        names = [alias.name for alias in node.names]
    targets = []
    for base, name in zip(bases, names):
        if base != 'mmsecvit' and not base.startswith('mmsecvit.'):
            continue
        full = f'{base}.{name}' if name else base
        targets.append(full if full in MODULES else base)
    return targets


def imports_of(module: str):
    """Yield ``(imported module, line, at module level)``."""
    tree = ast.parse(MODULES[module].read_text())

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in resolve(module, child):
                    yield target, child.lineno, not in_function
            yield from visit(
                child, in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from visit(tree, False)


def floor_package(module: str) -> str:
    parts = module.split('.')
    return '.'.join(parts[:2])


def test_every_package_has_a_floor():
    unknown = {floor_package(m) for m in MODULES} - set(FLOORS)
    assert not unknown, f'Give {sorted(unknown)} a floor in FLOORS.'


@pytest.mark.parametrize('module', sorted(MODULES))
def test_imports_go_only_downward(module):
    own = floor_package(module)
    upward = [
        f'line {line}: {target}'
        for target, line, _ in imports_of(module)
        if floor_package(target) != own
        and FLOORS[floor_package(target)] >= FLOORS[own]
    ]
    assert not upward, f'{module} imports from its floor or above: {upward}'


def test_utils_imports_nothing_from_mmsecvit():
    found = [(m, target) for m in MODULES if floor_package(m) ==
             'mmsecvit.utils' for target, _, _ in imports_of(m)
             if floor_package(target) != 'mmsecvit.utils']
    assert not found


def test_no_function_level_imports_of_mmsecvit():
    found = [(m, target, line) for m in MODULES
             for target, line, top in imports_of(m)
             if not top and (m, target) not in FUNCTION_LEVEL_ALLOWED]
    assert not found, ('Import these at the top of the module (or say in '
                       f'FUNCTION_LEVEL_ALLOWED why not): {found}')


def find_cycle(graph: dict):
    """A list of modules that import each other in a circle, or None."""
    state = {}

    def visit(module, path):
        state[module] = 'open'
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 'open':
                return path + [module, target]
            if target not in state:
                found = visit(target, path + [module])
                if found:
                    return found
        state[module] = 'done'
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    graph = {
        m: {target for target, _, top in imports_of(m) if top}
        for m in MODULES
    }
    cycle = find_cycle(graph)
    assert cycle is None, f'Import cycle: {" -> ".join(cycle)}'


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    # The walker itself: a utils module importing the models, and back.
    fake = {
        'mmsecvit.utils.fake': 'from mmsecvit.models import SecViT\n',
        'mmsecvit.models.fake': ('def f():\n'
                                 '    from ..utils import fake\n'),
    }
    paths = {}
    for name, text in fake.items():
        path = tmp_path / (name.replace('.', '_') + '.py')
        path.write_text(text)
        paths[name] = path
    monkeypatch.setitem(MODULES, 'mmsecvit.utils.fake',
                        paths['mmsecvit.utils.fake'])
    monkeypatch.setitem(MODULES, 'mmsecvit.models.fake',
                        paths['mmsecvit.models.fake'])
    assert list(imports_of('mmsecvit.utils.fake')) == [('mmsecvit.models', 1,
                                                        True)]
    assert list(imports_of('mmsecvit.models.fake')) == [
        ('mmsecvit.utils.fake', 2, False)
    ]
    with pytest.raises(AssertionError, match='floor or above'):
        test_imports_go_only_downward('mmsecvit.utils.fake')
    with pytest.raises(AssertionError, match='FUNCTION_LEVEL_ALLOWED'):
        test_no_function_level_imports_of_mmsecvit()
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
        'a', 'b', 'c', 'a'
    ]
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
