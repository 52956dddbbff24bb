# Mask R-CNN SecViT-S on the synthetic shapes of tools/misc/make_demo_data.py
# (256x320 images, classes of mmsecvit.datasets.demo.DEMO_COCO_CLASSES):
# a run of a few minutes on one CPU that goes through the whole pipeline,
# from scratch, with the real COCO metric code.
_base_ = [
    '../maskrcnn_secvit_s.py', '../_base_/datasets/demo_coco_instance.py',
    '../_base_/schedules/demo_6e.py'
]

model = dict(
    backbone=dict(
        drop_path_rate=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    roi_head=dict(
        bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))

# The demo data and schedule; _base_.pop keeps the demo_ names out.
data_root = _base_.pop('demo_data_root')
train_pipeline = _base_.pop('demo_train_pipeline')
test_pipeline = _base_.pop('demo_test_pipeline')
train_dataloader = _base_.pop('demo_train_dataloader')
val_dataloader = _base_.pop('demo_val_dataloader')
test_dataloader = val_dataloader
val_evaluator = _base_.pop('demo_val_evaluator')
test_evaluator = val_evaluator

max_epochs = _base_.pop('demo_max_epochs')
train_cfg = _base_.pop('demo_train_cfg')
# Gradient clipping against early spikes of training from scratch.
optim_wrapper = dict(
    _base_.pop('demo_optim_wrapper'), clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = _base_.pop('demo_param_scheduler')
auto_scale_lr = _base_.pop('demo_auto_scale_lr')
default_hooks = _base_.pop('demo_default_hooks')
