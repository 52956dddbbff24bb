# From scratch and for a few epochs on the demo data (configs/demo/): a
# higher lr than the real schedules', a short warmup, no steps.
#
# Used as configs/_base_/datasets/demo_coco_detection.py: a demo config
# takes each ``demo_`` setting with ``_base_.pop``.
demo_max_epochs = 6
demo_train_cfg = dict(max_epochs=demo_max_epochs, val_interval=demo_max_epochs)
demo_optim_wrapper = dict(optimizer=dict(lr=3e-4))
demo_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)
]
demo_auto_scale_lr = dict(base_batch_size=2)  # 1 process x 2 images
demo_default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=demo_max_epochs, max_keep_ckpts=1))
