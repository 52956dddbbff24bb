_base_ = './mask-rcnn_secvit-s_fpn_ms-3x_coco.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint={{_base_.secvit_checkpoints.base}})),
    neck=dict(in_channels=[80, 160, 320, 512]))
