# DINO 4-scale SecViT-S on the synthetic shapes of
# tools/misc/make_demo_data.py (256x320 images, classes of
# mmsecvit.datasets.demo.DEMO_COCO_CLASSES): a run of a few minutes on one
# CPU, from scratch, with the real COCO metric code.
_base_ = [
    '../dino/dino-4scale_secvit-s_8xb2-12e_coco.py',
    '../_base_/datasets/demo_coco_detection.py',
    '../_base_/schedules/demo_6e.py'
]

num_queries = 100  # of mmdet's 900: few objects on the demo images

model = dict(
    num_queries=num_queries,
    backbone=dict(
        drop_path_rate=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    bbox_head=dict(num_classes=len(_base_.metainfo['classes'])),
    test_cfg=dict(max_per_img=num_queries))

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
optim_wrapper = _base_.pop('demo_optim_wrapper')
param_scheduler = _base_.pop('demo_param_scheduler')
auto_scale_lr = _base_.pop('demo_auto_scale_lr')
default_hooks = _base_.pop('demo_default_hooks')
