"""Models: dilated ResNet backbones, heads, the context module and the Segmentor that joins them."""

from segdil.models.segmentor import SegmentationLoss, Segmentor, build_segmentor

__all__ = ["SegmentationLoss", "Segmentor", "build_segmentor"]
