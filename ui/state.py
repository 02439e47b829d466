"""Session-state and widget keys, in one place so pages and tests agree on them."""
from __future__ import annotations

__all__ = ["K"]


class K:
    """Widget keys (``st.file_uploader(key=K.XRAY_UPLOAD)``) and session-state slots."""

    # Analyse X-ray
    XRAY_SOURCE = "xray_source"
    XRAY_UPLOAD = "xray_upload"
    XRAY_EXAMPLE = "xray_example"
    XRAY_MODELS = "xray_models"
    XRAY_MASK_UPLOAD = "xray_mask_upload"
    XRAY_MASK_STRUCTURE = "xray_mask_structure"
    XRAY_WINDOW_C = "xray_window_center"
    XRAY_WINDOW_W = "xray_window_width"
    XRAY_RESULTS = "_xray_results"  # {"key": (image key, model ids), "results": [...], "timings": {...}}
    XRAY_SHAP = "xray_shap"
    # app.py's router has run in this session (ui.router.ensure_router)
    ROUTED = "_routed"
    # MRI study
    MRI_UPLOAD = "mri_upload"
    MRI_FOLDER = "mri_folder"
    MRI_EXAMPLE = "mri_example"
    MRI_SLICE = "mri_slice"
    MRI_DISC_MODEL = "mri_disc_model"
    # Compare models
    CMP_MODELS = "cmp_models"
    CMP_SOURCE = "cmp_source"
    CMP_FOLDER = "cmp_folder"
    CMP_UPLOAD = "cmp_upload"
    CMP_PHANTOM_KIND = "cmp_phantom_kind"
    CMP_PHANTOM_N = "cmp_phantom_n"
    CMP_RUN = "cmp_run"
    CMP_RESAMPLES = "cmp_resamples"
    CMP_HELD_OUT = "cmp_held_out"
    # Train
    TRAIN_TASK = "train_task"
    TRAIN_ARCH = "train_arch"
    TRAIN_DATA = "train_data"
    TRAIN_EPOCHS = "train_epochs"
    TRAIN_IMGSZ = "train_imgsz"
    TRAIN_BATCH = "train_batch"
    TRAIN_MODE = "train_mode"
    TRAIN_INIT = "train_init"
    TRAIN_NPROC = "train_nproc"
    TRAIN_EXTRA = "train_extra"
    TRAIN_SUBMIT = "train_submit"
    TRAIN_REFRESH = "train_refresh"
    PROMOTE_ID = "promote_id"
