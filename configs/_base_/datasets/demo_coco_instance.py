# The COCO-format demo data of tools/misc/make_demo_data.py with instance
# masks; used as demo_coco_detection.py (see there).
_base_ = './demo_coco_detection.py'

demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=_base_.image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
demo_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_base_.image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
demo_train_dataloader = dict(dataset=dict(pipeline=demo_train_pipeline))
demo_val_dataloader = dict(dataset=dict(pipeline=demo_test_pipeline))
