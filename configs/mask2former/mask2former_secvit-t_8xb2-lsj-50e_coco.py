_base_ = './mask2former_secvit-s_8xb2-lsj-50e_coco.py'

model = dict(
    backbone=dict(
        _base_.secvit.tiny.backbone, drop_path_rate=0.3, with_cp='selective'),
    panoptic_head=dict(in_channels=_base_.secvit.tiny.channels))
