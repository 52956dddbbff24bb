# Mask2Former instance segmentation, SecViT-S, on the synthetic shapes of
# tools/misc/make_demo_data.py (256x320 images, classes of
# mmsecvit.datasets.demo.DEMO_COCO_CLASSES): a run of a few minutes on one
# CPU, from scratch, with the real COCO metric code.
_base_ = '../mask2former/mask2former_secvit-s_8xb2-lsj-50e_coco.py'

data_root = 'data/demo/coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
image_size = (256, 320)  # (h, w), the size the demo images are made at
num_classes = len(metainfo['classes'])
num_queries = 50  # of mmdet's 100: fewer objects on the demo images

model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(
            type='BatchFixedSizePad',
            size=image_size,
            img_pad_value=0,
            pad_mask=True,
            mask_pad_value=0,
            pad_seg=False)
    ]),
    backbone=dict(
        drop_path_rate=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    panoptic_head=dict(
        num_things_classes=num_classes,
        num_queries=num_queries,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=num_classes),
    test_cfg=dict(max_per_image=num_queries))

train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=image_size[::-1], keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=image_size[::-1], keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# From scratch and for a few minutes: a higher lr than the 50e schedule's,
# a short warmup, then constant; validation once, at the end.
max_iters = 100
train_cfg = dict(
    max_iters=max_iters, val_interval=max_iters, dynamic_intervals=None)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)
]
auto_scale_lr = dict(base_batch_size=2)  # 1 process x 2 images

default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
