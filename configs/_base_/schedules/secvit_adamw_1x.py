# Detection schedule of SecViT: AdamW, 12 epochs, lr steps after epochs 8
# and 11, Swin's Mask R-CNN 1x setting (mmdet's swin configs): lr 1e-4,
# weight decay 0.05, 16 images per iteration (8 GPUs x 2). The authors'
# released RMT detection configs use lr 4e-4 (configs/README.md).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    # No weight decay on norms, biases and layer scales (gamma_1/2 are
    # shaped (1, C, 1, 1): flat_decay_mult would miss them). The RoPE
    # angles are buffers, never optimised. For layer-wise lr decay add
    # constructor='mmsecvit.LayerDecayOptimWrapperConstructor' and
    # layer_decay_rate (e.g. 0.9) to paramwise_cfg.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'gamma_': dict(decay_mult=0.)}))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

# The lr above is tuned for 16 images per iteration; --auto-scale-lr scales
# it to the batch size actually used.
auto_scale_lr = dict(enable=False, base_batch_size=16)
