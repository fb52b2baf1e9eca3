"""Models: dilated ResNet backbones, heads, the context module and the Segmentor that joins them."""

from segdil.models.segmentor import Segmentor, build_segmentor

__all__ = ["Segmentor", "build_segmentor"]
