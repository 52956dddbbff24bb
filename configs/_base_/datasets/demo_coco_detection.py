# The COCO-format demo data of tools/misc/make_demo_data.py (256x320 images,
# classes of mmsecvit.datasets.demo.DEMO_COCO_CLASSES), boxes only, for the
# configs in configs/demo/.
#
# A demo config lists this file after its model's config, whose data
# settings these replace. MMEngine forbids a key in two bases, hence the
# ``demo_`` names; the demo config takes each one as
# ``train_dataloader = _base_.pop('demo_train_dataloader')``, which also
# leaves the ``demo_`` name out of the final config.
metainfo = dict(classes=('circle', 'square', 'triangle'))
image_scale = (320, 256)  # (w, h), the size the demo images are made at

# MMSECVIT_DEMO_DATA: where tools/run_demo.sh generated the data.
demo_data_root = '{{$MMSECVIT_DEMO_DATA:data/demo}}/coco/'
demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
demo_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
demo_train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root=demo_data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=demo_train_pipeline))
demo_val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root=demo_data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=demo_test_pipeline))
demo_val_evaluator = dict(ann_file=demo_data_root +
                          'annotations/instances_val2017.json')
