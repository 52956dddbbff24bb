# Copyright (c) mmsecvit contributors. All rights reserved.
"""Print the environment report: ``python tools/misc/collect_env.py``."""
from mmsecvit.utils.collect_env import main

if __name__ == '__main__':
    main()
