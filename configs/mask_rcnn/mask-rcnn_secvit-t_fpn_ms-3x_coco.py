_base_ = './mask-rcnn_secvit-s_fpn_ms-3x_coco.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint={{_base_.secvit_checkpoints.tiny}})))
