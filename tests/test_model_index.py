# Copyright (c) mmsecvit contributors. All rights reserved.
"""model-index.yml and the configs' metafiles, as ``mim search`` reads
them, describe exactly the configs that exist."""
import glob
import os.path as osp

import pytest
import yaml

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_yaml(relpath):
    with open(osp.join(REPO_ROOT, relpath)) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def index():
    return load_yaml('model-index.yml')


@pytest.fixture(scope='module')
def metafiles(index):
    return {path: load_yaml(path) for path in index['Import']}


def model_configs():
    """Every config file a user can train with (not the shared pieces)."""
    paths = glob.glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    return {
        osp.relpath(p, REPO_ROOT)
        for p in paths
        if '_base_' not in osp.relpath(p, REPO_ROOT).split(osp.sep)
    }


def test_index_imports_every_metafile_under_configs(index):
    on_disk = {
        osp.relpath(p, REPO_ROOT)
        for p in glob.glob(
            osp.join(REPO_ROOT, 'configs', '*', 'metafile.yml'))
    }
    assert sorted(index['Import']) == sorted(on_disk)


def test_index_lists_every_config_that_exists_and_only_those(metafiles):
    listed = [
        model['Config'] for meta in metafiles.values()
        for model in meta['Models']
    ]
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    configs = model_configs()
    assert configs, 'no configs found'
    assert set(listed) - configs == set(), 'listed but missing'
    assert configs - set(listed) == set(), 'exists but not listed'


def test_models_have_unique_names_and_declared_collections(metafiles):
    collections = [
        c['Name'] for meta in metafiles.values()
        for c in meta.get('Collections', [])
    ]
    assert len(collections) == len(set(collections))
    names = []
    for meta in metafiles.values():
        for model in meta['Models']:
            names.append(model['Name'])
            assert model['In Collection'] in collections, model['Name']
            # mim names a model after its config file.
            assert model['Name'] == osp.splitext(
                osp.basename(model['Config']))[0]
    assert len(names) == len(set(names))


def test_models_carry_metadata_and_tasks(metafiles):
    tasks = {
        'Object Detection', 'Instance Segmentation', 'Semantic Segmentation'
    }
    for meta in metafiles.values():
        for model in meta['Models']:
            metadata = model['Metadata']
            assert metadata['Training Data'], model['Name']
            assert isinstance(metadata['Parameters'], int), model['Name']
            for result in model['Results']:
                assert result['Task'] in tasks, model['Name']
                assert result['Dataset'], model['Name']
                assert isinstance(result['Metrics'], dict), model['Name']


def test_configs_of_one_model_carry_its_flops(metafiles):
    """Configs of the same model (one collection, one parameter count: the
    1x and ms-3x schedules, configs/maskrcnn_secvit_s.py and the S 1x
    config) have the same FLOPs; a figure copied from another arch does
    not."""
    flops = {}
    for meta in metafiles.values():
        for model in meta['Models']:
            metadata = model['Metadata']
            if 'FLOPs' not in metadata:
                continue
            key = (model['In Collection'], metadata['Parameters'],
                   metadata['Training Data'])
            flops.setdefault(key, {})[model['Name']] = metadata['FLOPs']
    assert flops
    for key, by_name in flops.items():
        assert len(set(by_name.values())) == 1, (key, by_name)


def test_training_length_matches_the_config(metafiles):
    """Epochs for epoch-based configs, Iterations for iteration-based
    ones (mmdet's metafiles for Mask2Former's LSJ schedule say
    Iterations)."""
    from mmengine.config import Config
    for meta in metafiles.values():
        for model in meta['Models']:
            train_cfg = Config.fromfile(osp.join(REPO_ROOT,
                                                 model['Config'])).train_cfg
            metadata = model['Metadata']
            if 'max_iters' in train_cfg:
                assert metadata.get('Iterations') == train_cfg.max_iters, \
                    model['Name']
                assert 'Epochs' not in metadata, model['Name']
            else:
                assert metadata.get('Epochs') == train_cfg.max_epochs, \
                    model['Name']
