# Copyright (c) mmsecvit contributors. All rights reserved.
"""Reading the images a user names, with errors that say what to do."""
import os.path as osp

import mmcv
import numpy as np

from .errors import MissingFileError, UnreadableImageError


def read_image(path: str, channel_order: str = 'bgr') -> np.ndarray:
    """Read an image file with mmcv, or say why it cannot be read.

    mmcv returns None for a file it cannot decode, which surfaces later as a
    bare ``AssertionError: failed to load image`` (mmcv's loading transform)
    or an OpenCV error.

    Args:
        path (str): The image file.
        channel_order (str): 'bgr' (mmcv's default) or 'rgb'.

    Returns:
        np.ndarray: The image, shape (H, W, 3), uint8.

    Raises:
        MissingFileError: If ``path`` is not a file.
        UnreadableImageError: If the file is not an image OpenCV decodes.
    """
    if not osp.isfile(path):
        raise MissingFileError(f'No image at {path!r}. Check the path.')
    image = mmcv.imread(path)
    if image is None:
        raise UnreadableImageError(
            f'{path!r} is not an image that can be read (not an image, or '
            'truncated). Give a JPEG, PNG, BMP, TIFF or WebP file.')
    return mmcv.bgr2rgb(image) if channel_order == 'rgb' else image
