# Copyright (c) mmsecvit contributors. All rights reserved.
"""An on/off setting of a faster code path, changed for a block of code."""
from contextlib import contextmanager
from typing import Iterator


class Switch:
    """Whether a code path may run: on unless :meth:`set` turned it off
    within a ``with`` block.

    Args:
        enabled (bool): The setting outside any block. Defaults to True.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def __bool__(self) -> bool:
        return self.enabled

    @contextmanager
    def set(self, enabled: bool) -> Iterator[None]:
        """Use ``enabled`` within the block, the previous setting after it
        (also when the block raises)."""
        previous = self.enabled
        self.enabled = enabled
        try:
            yield
        finally:
            self.enabled = previous
