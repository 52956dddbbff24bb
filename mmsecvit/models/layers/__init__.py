# Copyright (c) mmsecvit contributors. All rights reserved.
