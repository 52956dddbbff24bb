_base_ = './fpn_secvit-s_8xb2-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(_base_.secvit.base.backbone, drop_path_rate=None),
    neck=dict(in_channels=_base_.secvit.base.channels))
