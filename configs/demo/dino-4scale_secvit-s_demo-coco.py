# DINO 4-scale SecViT-S on the synthetic shapes of
# tools/misc/make_demo_data.py (256x320 images, classes of
# mmsecvit.datasets.demo.DEMO_COCO_CLASSES): a run of a few minutes on one
# CPU, from scratch, with the real COCO metric code.
_base_ = '../dino/dino-4scale_secvit-s_8xb2-12e_coco.py'

data_root = 'data/demo/coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
image_scale = (320, 256)  # (w, h), the size the demo images are made at
num_queries = 100  # of mmdet's 900: few objects on the demo images

model = dict(
    num_queries=num_queries,
    backbone=dict(
        drop_path_rate=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    bbox_head=dict(num_classes=len(metainfo['classes'])),
    test_cfg=dict(max_per_img=num_queries))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
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

# From scratch and for a few epochs: a higher lr than the 12e schedule's,
# a short warmup, no steps.
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)
]
auto_scale_lr = dict(base_batch_size=2)  # 1 process x 2 images

default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
