"""Instance segmentation: Mask R-CNN with criss-cross attention (RCCA) in its ResNet-FPN backbone.

Built on torchvision's detection models and on pycocotools (the COCO API): install with
``pip install 'ccnet-pytorch[detection]'``. The rest of ccnet does not need either; this package
is imported only for ``task: detection`` configs.

* `ccnet.detection.model`: `build_mask_rcnn` (torchvision's ``MaskRCNN`` whose
  ``layer3`` holds the context block: RCCA, non-local or none), weight loading.
* `ccnet.detection.data`: `CocoInstances` over ``instances_*.json`` (polygons, RLE,
  crowd regions), the training augmentation, collation.
* `ccnet.detection.evaluate`: detections -> COCO results (RLE masks) -> ``COCOeval``.
* `ccnet.detection.visualize`: boxes, masks, class names and scores drawn on the image.
* `ccnet.detection.trainer`: `DetectionTrainer`, the engine's trainer for Mask R-CNN.
* `ccnet.detection.synthetic`: a long-range-context instance task written as a COCO dataset.
"""

try:
    import pycocotools  # noqa: F401
    import torchvision  # noqa: F401
except (ImportError, RuntimeError, OSError) as error:  # missing, or a torchvision built for another torch
    raise ImportError(
        f"ccnet.detection needs torchvision (built for this torch) and pycocotools: "
        f"pip install 'ccnet-pytorch[detection]' ({type(error).__name__}: {error})"
    ) from error

from ccnet.detection.data import CocoInstances, collate
from ccnet.detection.evaluate import coco_evaluate, to_coco_results
from ccnet.detection.model import (
    CONTEXTS,
    ContextStage,
    build_mask_rcnn,
    init_backbone_from,
    load_mask_rcnn_weights,
)

__all__ = [
    "CONTEXTS",
    "CocoInstances",
    "ContextStage",
    "build_mask_rcnn",
    "coco_evaluate",
    "collate",
    "init_backbone_from",
    "load_mask_rcnn_weights",
    "to_coco_results",
]
