# Cascade Mask R-CNN FPN with a SecViT-S backbone. The box heads are those
# of Swin's and RMT's Cascade Mask R-CNN configs (4 shared convs + 1 fc with
# SyncBN, GIoU loss, class-specific regression), not mmdet's 2-fc default:
# the protocol SecViT's tables compare against.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py', 'secvit_backbones.py'
]

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _base_.secvit.small.backbone,
        # Selective activation checkpointing, as in the Mask R-CNN configs
        # (same results, much less memory at 800x1333; docs/benchmark.md).
        with_cp='selective'),
    neck=dict(in_channels=_base_.secvit.small.channels),
    roi_head=dict(bbox_head=[
        dict(
            type='Shared4Conv1FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=target_stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        # One head per cascade stage, with mmdet's (and Swin's) target stds.
        for target_stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                            [0.033, 0.033, 0.067, 0.067])
    ]))
