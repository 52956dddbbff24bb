# The ADE20K-format demo data of tools/misc/make_demo_data.py (150 classes,
# reduce_zero_label as ADE20K), for the configs in configs/demo/.
#
# A demo config lists this file after its model's config, whose data
# settings these replace. MMEngine forbids a key in two bases, hence the
# ``demo_`` names; the demo config takes each one as
# ``train_dataloader = _base_.pop('demo_train_dataloader')``, which also
# leaves the ``demo_`` name out of the final config.
image_scale = (640, 256)  # (w, h) upper bound, the maps of mmseg's (2048, 512)

# MMSECVIT_DEMO_DATA: where tools/run_demo.sh generated the data.
demo_data_root = '{{$MMSECVIT_DEMO_DATA:data/demo}}/ade/ADEChallengeData2016'
demo_crop_size = (256, 256)
demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=image_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=demo_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
demo_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
demo_train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(data_root=demo_data_root, pipeline=demo_train_pipeline))
demo_val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(data_root=demo_data_root, pipeline=demo_test_pipeline))
