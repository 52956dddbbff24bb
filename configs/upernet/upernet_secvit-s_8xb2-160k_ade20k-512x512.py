# UperNet, SecViT-S, 160k iterations on ADE20K, 512x512 crops
# (8 GPUs x 2 images).
_base_ = [
    '../_base_/models/upernet_secvit-s.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/schedules/secvit_adamw_160k.py',
    'mmseg::_base_/default_runtime.py'
]

crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
