"""Detection architectures: Ultralytics YOLO (from model YAML) and torchvision Faster R-CNN (random init).

Why: the implant/scoliosis study used both families; both must build and run with no network at all,
so YOLO is always built from its YAML (never a ``.pt`` name, which Ultralytics would download) and
torchvision models get ``weights=None, weights_backbone=None``. :func:`ensure_ultralytics_offline`
holds every setting ENV-NOTES found necessary for zero network calls.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from spine_models._env import configure_offline
from spine_models.models.registry import register_model

__all__ = [
    "YOLO_YAMLS",
    "FASTER_RCNN_ARCHS",
    "ensure_ultralytics_offline",
    "build_yolo",
    "build_fasterrcnn_mobilenet_v3",
    "build_fasterrcnn_resnet50",
    "is_yolo",
]

YOLO_YAMLS = {"yolov8n": "yolov8n.yaml", "yolo11n": "yolo11n.yaml"}
FASTER_RCNN_ARCHS = ("fasterrcnn_mobilenet_v3", "fasterrcnn_resnet50")
_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
_offline_done = False


def is_yolo(arch: str) -> bool:
    """True for the Ultralytics architectures (they train through Ultralytics' own trainer)."""
    return arch in YOLO_YAMLS


def ensure_ultralytics_offline() -> Path:
    """Make Ultralytics fully offline (idempotent); returns its user config dir.

    Env ``YOLO_OFFLINE=1`` / ``YOLO_AUTOINSTALL=False`` / ``YOLO_CONFIG_DIR`` (set by ``_env``), the
    Arial fonts it would download (a copy of matplotlib's DejaVuSans; its font check ignores
    YOLO_OFFLINE), and settings ``sync=False`` with every logging integration off.
    """
    global _offline_done
    configure_offline()
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR  # after the env vars: it reads them at import

    cfg_dir = Path(USER_CONFIG_DIR)
    if not _offline_done:
        cfg_dir.mkdir(parents=True, exist_ok=True)
        import matplotlib

        dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            target = cfg_dir / name
            if not target.exists() and dejavu.exists():
                shutil.copyfile(dejavu, target)
        wanted = {"sync": False, **{k: False for k in _INTEGRATIONS}}
        if any(SETTINGS.get(k) != v for k, v in wanted.items()):
            SETTINGS.update(wanted)
        _offline_done = True
    return cfg_dir


def build_yolo(arch: str, nc: int) -> Any:
    """An Ultralytics ``DetectionModel`` from ``<arch>.yaml`` with ``nc`` classes, random weights."""
    ensure_ultralytics_offline()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(cfg=YOLO_YAMLS[arch], nc=int(nc), verbose=False)


@register_model("yolov8n", task="detect", input_size=512, nc=2)
def yolov8n(nc: int = 2, **_: Any) -> Any:
    """Ultralytics YOLOv8n built from yolov8n.yaml (3.0 M params), random init."""
    return build_yolo("yolov8n", nc)


@register_model("yolo11n", task="detect", input_size=512, nc=2)
def yolo11n(nc: int = 2, **_: Any) -> Any:
    """Ultralytics YOLO11n built from yolo11n.yaml (2.6 M params), random init."""
    return build_yolo("yolo11n", nc)


def _rcnn_kwargs(min_size: int, max_size: int | None, score_thresh: float, detections_per_img: int,
                 rpn_post_nms_top_n_train: int, box_batch_size_per_image: int) -> dict[str, Any]:
    return {"min_size": int(min_size), "max_size": int(max_size or min_size), "box_score_thresh": float(score_thresh),
            "box_detections_per_img": int(detections_per_img),
            "rpn_pre_nms_top_n_train": 2 * int(rpn_post_nms_top_n_train),
            "rpn_post_nms_top_n_train": int(rpn_post_nms_top_n_train),
            "box_batch_size_per_image": int(box_batch_size_per_image)}


def _slim_box_head(model: Any, representation_size: int, nc: int) -> Any:
    """Swap torchvision's 1024-wide two-layer box head for a narrower one.

    Why: with 256 FPN channels and 7x7 RoI pooling the default head holds 12.8 M of the MobileNet model's
    19 M parameters and most of its training FLOPs; at 256 wide a CPU training step is ~4x faster and the
    fp16 weight file ~2x smaller, with nothing in the phantom's two or three box classes that needs more.
    """
    if representation_size == 1024:
        return model  # torchvision's own head
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    out_channels = model.backbone.out_channels
    resolution = model.roi_heads.box_roi_pool.output_size[0]
    model.roi_heads.box_head = TwoMLPHead(out_channels * resolution ** 2, int(representation_size))
    model.roi_heads.box_predictor = FastRCNNPredictor(int(representation_size), int(nc) + 1)
    return model


@register_model("fasterrcnn_mobilenet_v3", task="detect", input_size=512, nc=2, min_size=512, max_size=512)
def build_fasterrcnn_mobilenet_v3(nc: int = 2, min_size: int = 512, max_size: int | None = 512,
                                  score_thresh: float = 0.001, detections_per_img: int = 100,
                                  representation_size: int = 256, rpn_post_nms_top_n_train: int = 500,
                                  box_batch_size_per_image: int = 128, **_: Any) -> Any:
    """torchvision Faster R-CNN MobileNetV3-Large FPN, weights=None (``nc`` classes + background).

    The CPU variant: a 256-wide box head and 500 RPN proposals / 128 sampled RoIs per training image
    (torchvision: 1024, 2000, 512) - 8.3 M parameters, ~4x faster per step; pass the torchvision values
    to get the reference model.
    """
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    model = fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=int(nc) + 1,
        **_rcnn_kwargs(min_size, max_size, score_thresh, detections_per_img, rpn_post_nms_top_n_train,
                       box_batch_size_per_image))
    return _slim_box_head(model, representation_size, nc)


@register_model("fasterrcnn_resnet50", task="detect", input_size=512, nc=2, min_size=512, max_size=512)
def build_fasterrcnn_resnet50(nc: int = 2, min_size: int = 512, max_size: int | None = 512,
                              score_thresh: float = 0.001, detections_per_img: int = 100,
                              representation_size: int = 1024, rpn_post_nms_top_n_train: int = 2000,
                              box_batch_size_per_image: int = 512, **_: Any) -> Any:
    """torchvision Faster R-CNN ResNet-50 FPN, weights=None (``nc`` classes + background), torchvision's sizes."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    model = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=int(nc) + 1,
        **_rcnn_kwargs(min_size, max_size, score_thresh, detections_per_img, rpn_post_nms_top_n_train,
                       box_batch_size_per_image))
    return _slim_box_head(model, representation_size, nc)
