"""segdil: semantic segmentation with dilated ResNets and multi-scale context aggregation."""

import os

# albumentations 2.0.8 checks the network for a newer release on every import (2 s timeout
# on machines without internet); segdil never wants that, so switch it off before any import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
