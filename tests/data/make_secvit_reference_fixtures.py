# Copyright (c) mmsecvit contributors. All rights reserved.
"""Write tests/data/secvit_reference.pth from the authors' SecViT code.

The authors' file is NOT part of this project. Get it from the public
repository qhfan/SecViT (``classfication_release/SecViT.py``, MIT) and run::

    pip install einops  # the authors' code needs it
    python tests/data/make_secvit_reference_fixtures.py \
        --reference /path/to/SecViT/classfication_release/SecViT.py

The reference imports timm and fvcore only for helpers that are irrelevant
in eval mode (DropPath, init, model registry, FLOP counting); small stand-ins
are installed for them so those packages are not needed.

Every case builds the authors' model and fills it with
:func:`mmsecvit.testing.randomize_weights` (values depend only on the tensor
names, which our backbone shares), runs it in float64 on a seeded input and
stores, for each stage's output before its downsample, 1024 sampled values
and the sum and absolute sum of the whole map. For the cases in
``GRADIENT_CASES`` it also runs one training-mode backward and stores the
sum, absolute sum and 64 sampled values of every parameter's gradient.
"""
import argparse
import importlib.util
import sys
import types

import torch
import torch.nn as nn

from mmsecvit.models import SecViT
from mmsecvit.testing import randomize_weights

CASES = [
    # (name, arch, batch, height, width)
    ('tiny_224', 'tiny', 2, 224, 224),
    ('small_224', 'small', 1, 224, 224),
    ('small_448', 'small', 1, 448, 448),
    ('base_224', 'base', 1, 224, 224),
    ('large_224', 'large', 1, 224, 224),
    ('custom_128', dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 2, 1],
                        num_heads=[1, 2, 4, 8], num_clusters=[4, 2, 2, -1],
                        layer_scales=[False, False, True, True]), 2, 128, 128),
]
NUM_SAMPLES = 1024
SEED = 2024
#: Cases whose parameter gradients are stored too: one training step (BN
#: with batch statistics; the reference has no dropout and its DropPath
#: stand-in is the identity) of :func:`gradient_loss`.
GRADIENT_CASES = ['custom_128']
GRADIENT_SAMPLES = 64


def install_stand_ins() -> None:
    """Stand-ins for the timm/fvcore names the reference imports."""

    class DropPath(nn.Module):  # identity in eval mode, as timm's

        def __init__(self, p=0.):
            super().__init__()

        def forward(self, x):
            return x

    layers = types.ModuleType('timm.models.layers')
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    registry = types.ModuleType('timm.models.registry')
    registry.register_model = lambda fn: fn
    vit = types.ModuleType('timm.models.vision_transformer')
    vit._cfg = lambda **kwargs: kwargs
    fvcore_nn = types.ModuleType('fvcore.nn')
    fvcore_nn.FlopCountAnalysis = fvcore_nn.flop_count_table = None
    for name, module in {
            'timm': types.ModuleType('timm'),
            'timm.models': types.ModuleType('timm.models'),
            'timm.models.layers': layers,
            'timm.models.registry': registry,
            'timm.models.vision_transformer': vit,
            'fvcore': types.ModuleType('fvcore'),
            'fvcore.nn': fvcore_nn,
    }.items():
        sys.modules.setdefault(name, module)


def load_reference(path: str):
    install_stand_ins()
    spec = importlib.util.spec_from_file_location('secvit_reference', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KClusterFormerSimpleNew


def reference_kwargs(arch) -> dict:
    settings = SecViT(arch=arch).arch_settings
    clusters = settings['num_clusters']
    return dict(
        embed_dims=settings['embed_dims'],
        depths=settings['depths'],
        num_heads=settings['num_heads'],
        num_clusterss=[[c] * d for c, d in zip(clusters, settings['depths'])],
        mlp_ratios=[settings.get('mlp_ratios', 3.)] * 4,
        layerscales=settings.get('layer_scales', [False] * 4))


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list:
    """Each stage's map after its blocks, before its downsample."""
    outs = []
    hooks = []
    for layer in model.layers:
        if layer.downsample is not None:
            hooks.append(
                layer.downsample.register_forward_pre_hook(
                    lambda m, args: outs.append(args[0])))
        else:
            hooks.append(
                layer.register_forward_hook(
                    lambda m, args, out: outs.append(out)))
    model(x)
    for hook in hooks:
        hook.remove()
    return outs


def make_input(batch: int, height: int, width: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(SEED)
    return torch.randn(
        batch, 3, height, width, generator=gen, dtype=torch.float64)


def sample_indices(numel: int, stage: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(SEED + stage)
    return torch.randint(numel, (NUM_SAMPLES, ), generator=gen)


def gradient_loss(outs: list) -> torch.Tensor:
    """A loss over every stage's output whose gradient reaches every value:
    each map weighted by seeded random numbers."""
    gen = torch.Generator().manual_seed(SEED + 100)
    return sum((out * torch.randn(out.shape, generator=gen,
                                  dtype=out.dtype)).sum() for out in outs)


def gradient_sample_indices(name: str, numel: int) -> torch.Tensor:
    """The sampled positions of a parameter's gradient (seeded by the
    parameter's name, so they are not stored)."""
    gen = torch.Generator().manual_seed(SEED + sum(name.encode()))
    return torch.randint(numel, (GRADIENT_SAMPLES, ), generator=gen)


def gradient_summary(name: str, grad: torch.Tensor) -> dict:
    """Sum, absolute sum and sampled values of one parameter's gradient."""
    idx = gradient_sample_indices(name, grad.numel())
    return dict(
        values=grad.flatten()[idx].clone(),
        sum=grad.sum().item(),
        abs_sum=grad.abs().sum().item())


def reference_gradients(reference_cls, arch, batch: int, height: int,
                        width: int) -> dict:
    """Gradient summaries of every parameter of the authors' model after
    one training-mode backward of :func:`gradient_loss`."""
    model = reference_cls(**reference_kwargs(arch)).double().train()
    randomize_weights(model, seed=SEED)
    outs = stage_outputs(model, make_input(batch, height, width))
    gradient_loss(outs).backward()
    return {
        name: gradient_summary(name, param.grad)
        for name, param in model.named_parameters()
        if param.grad is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reference', required=True,
                        help="path of the authors' SecViT.py")
    parser.add_argument('--out', default='tests/data/secvit_reference.pth')
    args = parser.parse_args()

    reference_cls = load_reference(args.reference)
    fixtures = dict(seed=SEED, cases={})
    with torch.no_grad():
        for name, arch, batch, height, width in CASES:
            model = reference_cls(**reference_kwargs(arch)).double().eval()
            randomize_weights(model, seed=SEED)
            x = make_input(batch, height, width)
            outs = stage_outputs(model, x)
            stages = []
            for i, out in enumerate(outs):
                idx = sample_indices(out.numel(), i)
                stages.append(
                    dict(
                        shape=tuple(out.shape),
                        indices=idx,
                        values=out.flatten()[idx].clone(),
                        sum=out.sum().item(),
                        abs_sum=out.abs().sum().item()))
            fixtures['cases'][name] = dict(
                arch=arch,
                input_shape=(batch, 3, height, width),
                input_sum=x.sum().item(),
                stages=stages)
            print(name, [s['shape'] for s in stages])
    for name, arch, batch, height, width in CASES:
        if name in GRADIENT_CASES:
            fixtures['cases'][name]['gradients'] = reference_gradients(
                reference_cls, arch, batch, height, width)
            print(name, 'gradients of',
                  len(fixtures['cases'][name]['gradients']), 'parameters')
    torch.save(fixtures, args.out)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
