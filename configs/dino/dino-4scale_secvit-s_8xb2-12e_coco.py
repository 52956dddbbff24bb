# DINO 4-scale, SecViT-S, 12 epochs on COCO (8 GPUs x 2 images): mmdet's
# DINO (AdamW lr 1e-4, weight decay 1e-4, backbone at 0.1 x lr, gradient
# clipping 0.1, lr x0.1 after epoch 11, 900 queries). As for mmdet's ResNet
# DINO, the stride-8, 16 and 32 maps go through the ChannelMapper, which adds
# the fourth scale. SecViT's own DINO setting is not public.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../_base_/models/secvit_backbones.py'
]

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _base_.secvit.small.backbone,
        # Only the maps the neck consumes, or their output norms would be
        # parameters without gradients.
        out_indices=(1, 2, 3),
        # Less memory at 800x1333, same results (docs/benchmark.md).
        with_cp='selective'),
    neck=dict(in_channels=_base_.secvit.small.channels[1:]))
