_base_ = './cascade-mask-rcnn_secvit-s_fpn_ms-3x_coco.py'

model = dict(
    backbone=dict(_base_.secvit.tiny.backbone, with_cp='selective'),
    neck=dict(in_channels=_base_.secvit.tiny.channels))
