_base_ = './mask2former_secvit-s_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(_base_.secvit.base.backbone, drop_path_rate=0.3),
    decode_head=dict(in_channels=_base_.secvit.base.channels))
