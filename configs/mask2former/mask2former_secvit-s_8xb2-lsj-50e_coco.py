# Mask2Former instance segmentation, SecViT-S, COCO, 50 epochs (368,750
# iterations of 8 GPUs x 2 images) of large-scale jittering at 1024x1024:
# mmdet's Mask2Former (AdamW lr 1e-4, weight decay 0.05, gradient clipping
# 0.01, 100 queries). Backbone settings as mmdet's Swin Mask2Former configs;
# SecViT's own Mask2Former setting is not public.
_base_ = [
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
    '../_base_/models/secvit_backbones.py'
]

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _base_.secvit.small.backbone,
        # mmdet's Swin-T/S Mask2Former value.
        drop_path_rate=0.3,
        # Less memory at 1024x1024, same results (docs/benchmark.md).
        with_cp='selective'),
    panoptic_head=dict(in_channels=_base_.secvit.small.channels))

# As mmdet's Swin Mask2Former: the backbone at 0.1 x lr (mmdet's base), its
# norm layers (and SecViT's layer scales) without weight decay. SecViT has
# no position-embedding parameters (RoPE angles are buffers); query and
# level embeddings keep mmdet's decay_mult=0.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            key: dict(lr_mult=0.1, decay_mult=0.0)
            for key in _base_.secvit_norm_keys
        },
        norm_decay_mult=0.0))

# mmdet's instance config keeps the panoptic base's seg folder in
# data_prefix; CocoDataset does not read it, but tools/train.py's data check
# would ask for panoptic annotations.
train_dataloader = dict(
    dataset=dict(data_prefix=dict(_delete_=True, img='train2017/')))
val_dataloader = dict(
    dataset=dict(data_prefix=dict(_delete_=True, img='val2017/')))
test_dataloader = val_dataloader
