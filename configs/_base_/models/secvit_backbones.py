# SecViT for any mmdet/mmseg config: the backbone dict of each arch and the
# channels of its stages, the one place to take them from (docs/any_config.md).
# Inherit this file after the config to convert and write, e.g.:
#   custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)
#   model = dict(
#       backbone=_base_.secvit.small.backbone,
#       neck=dict(in_channels=_base_.secvit.small.channels))
# A neck that starts at stride 8 (RetinaNet, FCOS, DINO) takes stages 1-3:
#       backbone=dict(_base_.secvit.small.backbone, out_indices=(1, 2, 3)),
#       neck=dict(in_channels=_base_.secvit.small.channels[1:]))
# mmseg configs that set model.pretrained (a ResNet's weights) need
# model.pretrained=None besides: mmseg hands it to the backbone. This file
# leaves custom_imports to the config, which may import more (mmseg's
# Mask2Former imports mmdet.models): two bases may not both set it.
_base_ = '../secvit_pretrained.py'


def _secvit(arch, channels, depths, drop_path_rate):
    return dict(
        backbone=dict(
            # Replaces the whole backbone of the config it goes into.
            _delete_=True,
            type='mmsecvit.SecViT',
            arch=arch,
            out_indices=(0, 1, 2, 3),
            # Our detection choice (the paper does not give one); families
            # set their own where they differ.
            drop_path_rate=drop_path_rate,
            # BN statistics of 2 images per GPU are poor: SyncBN in the stem
            # and downsampling layers. It acts as BN in a single process, and
            # mmsecvit's prepare_runtime makes it BN without CUDA.
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            init_cfg=dict(
                type='Pretrained',
                checkpoint=_base_.secvit_checkpoints[arch])),
        # Output channels of stages 0-3 (strides 4, 8, 16, 32): the neck's
        # in_channels are [channels[i] for i in out_indices].
        channels=channels,
        depths=depths)


secvit = dict(
    tiny=_secvit('tiny', [64, 128, 256, 512], [2, 2, 9, 2], 0.1),
    small=_secvit('small', [64, 128, 256, 512], [3, 4, 18, 4], 0.2),
    base=_secvit('base', [80, 160, 320, 512], [4, 8, 26, 8], 0.3))

# The names (custom_keys prefixes) of every norm layer and layer scale of
# the backbones above; B's depths cover the smaller archs. A custom key such
# as mmdet's/mmseg's 'backbone' lr multiplier overrides norm_decay_mult, so
# configs that set one give these keys their own decay, as mmdet's and
# mmseg's Swin Mask2Former configs list Swin's norms.
secvit_norm_keys = [
    # The BN layers of the convolutional stem.
    *(f'backbone.patch_embed.proj.{i}.' for i in (1, 4, 7, 10)),
    *(f'backbone.layers.{i}.downsample.norm' for i in range(3)),
    *(f'backbone.norm{i}.' for i in range(4)),
    *(f'backbone.layers.{i}.blocks.{j}.{name}'
      for i, depth in enumerate(secvit['base']['depths']) for j in range(depth)
      for name in ('norm', 'gamma_')),
]
