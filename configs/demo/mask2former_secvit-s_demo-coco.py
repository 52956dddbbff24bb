# Mask2Former instance segmentation, SecViT-S, on the synthetic shapes of
# tools/misc/make_demo_data.py (256x320 images, classes of
# mmsecvit.datasets.demo.DEMO_COCO_CLASSES): a run of a few minutes on one
# CPU, from scratch, with the real COCO metric code.
_base_ = [
    '../mask2former/mask2former_secvit-s_8xb2-lsj-50e_coco.py',
    '../_base_/datasets/demo_coco_detection.py',
    '../_base_/schedules/demo_100iter.py'
]

# (h, w) as mmdet's Mask2Former configs, the size the demo images are made at.
image_size = _base_.pop('image_scale')[::-1]
num_classes = len(_base_.metainfo['classes'])
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

# The pipelines of mmdet's Mask2Former (float images, flip before resize),
# at the demo's size and without the large-scale jitter.
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

# The demo data and schedule; _base_.pop keeps the demo_ names out.
_base_.pop('demo_train_pipeline')
_base_.pop('demo_test_pipeline')
data_root = _base_.pop('demo_data_root')
train_dataloader = _base_.pop('demo_train_dataloader')
train_dataloader.dataset.pipeline = train_pipeline
val_dataloader = _base_.pop('demo_val_dataloader')
val_dataloader.dataset.pipeline = test_pipeline
test_dataloader = val_dataloader
val_evaluator = _base_.pop('demo_val_evaluator')
test_evaluator = val_evaluator

max_iters = _base_.pop('demo_max_iters')
train_cfg = dict(_base_.pop('demo_train_cfg'), dynamic_intervals=None)
optim_wrapper = _base_.pop('demo_optim_wrapper')
param_scheduler = _base_.pop('demo_param_scheduler')
auto_scale_lr = _base_.pop('demo_auto_scale_lr')
default_hooks = _base_.pop('demo_default_hooks')
