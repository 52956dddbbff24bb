_base_ = './dino-4scale_secvit-s_8xb2-12e_coco.py'

model = dict(
    backbone=dict(
        _base_.secvit.base.backbone,
        out_indices=(1, 2, 3),
        with_cp='selective'),
    neck=dict(in_channels=_base_.secvit.base.channels[1:]))
