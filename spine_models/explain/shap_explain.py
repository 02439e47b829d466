"""SHAP partition explanations (the Xception study) with an evaluation budget.

Why these choices: shap's PartitionExplainer with an Image blur masker is the study's method; its cost
is ``max_evals`` model calls per explained output, so only one output (the top class, or the one asked
for) is explained — all outputs would cost n_classes times more (ENV-NOTES). Input is NHWC numpy, as
shap's Image masker expects; the ``predict_fn`` receives NHWC batches.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["shap_partition"]


def shap_partition(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, max_evals: int = 300,
                   batch_size: int = 50, class_index: int | None = None,
                   progress_callback: Callable[[int, int], None] | None = None, blur: int | None = None) -> np.ndarray:
    """Signed HxW attribution of ``image`` (HxW or HxWxC, model input space) for one class.

    ``predict_fn``: (N, H, W, C) float32 -> (N, n_classes) scores. ``class_index=None``: the top class.
    ``progress_callback(done, max_evals)`` is called after every batch of model calls. ``blur``: masker
    kernel (default a quarter of the image side, odd).
    """
    import shap

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"shap_partition: image must be HxW or HxWxC, got shape {img.shape}")
    h, w, c = img.shape
    if max_evals < 3:
        raise ValueError(f"shap_partition: max_evals={max_evals} too small; use at least 3 (300 is typical)")
    k = blur or max(3, (min(h, w) // 4) | 1)
    done = [0]

    def f(batch: np.ndarray) -> np.ndarray:
        b = np.asarray(batch, dtype=np.float32).reshape(-1, h, w, c)
        out = np.asarray(predict_fn(b), dtype=np.float64)
        done[0] += len(b)
        if progress_callback is not None:
            progress_callback(min(done[0], max_evals), max_evals)
        return out

    if class_index is None:
        class_index = int(np.argmax(f(img[None])[0]))
        done[0] = 0
    if c == 1:
        # shap's blur masker uses cv2, which drops a singleton channel; explain a 3-channel copy and
        # average the channels back inside the wrapped function
        base = f
        img3 = np.repeat(img, 3, axis=-1)

        def f3(batch: np.ndarray) -> np.ndarray:
            b = np.asarray(batch, dtype=np.float32).reshape(-1, h, w, 3).mean(axis=-1, keepdims=True)
            return base(b)

        masker = shap.maskers.Image(f"blur({k},{k})", img3.shape)
        explainer = shap.PartitionExplainer(f3, masker)
        sv = explainer(img3[None], max_evals=max_evals, batch_size=batch_size, outputs=[class_index], silent=True)
    else:
        masker = shap.maskers.Image(f"blur({k},{k})", img.shape)
        explainer = shap.PartitionExplainer(f, masker)
        sv = explainer(img[None], max_evals=max_evals, batch_size=batch_size, outputs=[class_index], silent=True)
    values = np.asarray(sv.values)[0]  # (H, W, C, 1)
    values = values.reshape(h, w, -1)
    return values.sum(axis=-1).astype(np.float32)
