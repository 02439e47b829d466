"""Drawings shared by the app and the clinician report: a Cobb read's endplate lines on the film.

Why one place: the page, the HTML report and the PDF must show the same lines, and none of them when the
read is not a finding (``measure.cobb_read``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["cobb_overlay"]


def cobb_overlay(rgb: np.ndarray, cobb: dict[str, Any]) -> np.ndarray:
    """Draw each curve's two end-plate lines (extended) and its angle with the ±5° band, and the column's
    centreline where the read has one; nothing when the read is not a finding (its lines would show a
    measurement that failed)."""
    import cv2

    from spine_models.measure import cobb_read

    out = np.ascontiguousarray(rgb.copy())
    if not cobb_read(cobb).ok:
        return out
    h, w = out.shape[:2]
    t = max(1, round(max(h, w) / 300))
    colors = [(255, 215, 0), (0, 229, 255), (255, 64, 129)]
    line = cobb.get("centreline")
    if line and len(line) >= 2 and isinstance(cobb.get("centreline_deg"), (int, float)):
        # the column's centreline (measure.centreline_cobb): the curve the scoliosis call checks the endplates against
        pts = np.round(np.asarray(line, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], False, (124, 252, 0), max(1, t // 2), cv2.LINE_AA)
        text = f"centreline {cobb['centreline_deg']:.1f} deg"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, max(1, t // 2))
        x = int(np.clip(pts[-1, 0, 0] - tw / 2, 0, max(0, w - tw)))  # centred under the line's end, inside the film
        y = int(min(pts[-1, 0, 1] + th + 4 * t, h - 2))
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, (124, 252, 0), max(1, t // 2), cv2.LINE_AA)
    for i, c in enumerate(cobb.get("curves") or []):
        color = colors[i % len(colors)]
        for key in ("upper_line", "lower_line"):
            line = c.get(key)
            if not line:
                continue
            (x1, y1), (x2, y2) = line
            dx, dy = x2 - x1, y2 - y1
            n = max(np.hypot(dx, dy), 1e-6)
            ext = 0.15 * w
            p = (int(x1 - dx / n * ext), int(y1 - dy / n * ext))
            q = (int(x2 + dx / n * ext), int(y2 + dy / n * ext))
            cv2.line(out, p, q, color, t, cv2.LINE_AA)
        if c.get("upper_line") and c.get("lower_line"):
            y = int((c["upper_line"][0][1] + c["lower_line"][0][1]) / 2)
            band = c.get("band") or [c["angle_deg"] - 5, c["angle_deg"] + 5]
            cv2.putText(out, f"{c['angle_deg']:.1f} deg ({band[0]:.0f}-{band[1]:.0f})", (int(0.02 * w), y),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35 * t, color, t, cv2.LINE_AA)
    return out
