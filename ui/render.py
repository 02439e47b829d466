"""Renderers: plotly charts, overlays, tables and downloads built from typed results and reports.

Why here: pages call one function per thing shown, so they stay a readable description of the UI.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

import numpy as np
import streamlit as st

__all__ = ["prob_bars", "confusion_heatmap", "roc_figure", "png_bytes", "cobb_overlay", "results_json",
           "results_csv", "metric_table", "card_summary", "m_text", "history_figure"]


def m_text(m: Any, digits: int = 3) -> str:
    """``{"value", "ci95"}`` -> "0.912 (0.871–0.950)"; plain numbers as is; missing -> "—"."""
    if isinstance(m, dict) and "value" in m:
        v, ci = m.get("value"), m.get("ci95") or [None, None]
        if v is None:
            return "—"
        if ci and ci[0] is not None and ci[1] is not None:
            return f"{v:.{digits}f} ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})"
        return f"{v:.{digits}f}"
    if isinstance(m, float):
        return f"{m:.{digits}f}"
    return "—" if m is None else str(m)


def prob_bars(result: Any) -> Any:
    """Horizontal plotly bars of class probabilities, the predicted class highlighted."""
    import plotly.graph_objects as go

    top = result.top_class
    colors = ["#1565c0" if c == top else "#90a4ae" for c in result.classes]
    fig = go.Figure(go.Bar(x=[float(p) for p in result.probs], y=list(result.classes), orientation="h",
                           marker_color=colors, text=[f"{p * 100:.1f}%" for p in result.probs], textposition="auto"))
    fig.update_layout(height=60 + 40 * len(result.classes), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], title="probability"), yaxis=dict(autorange="reversed"))
    return fig


def decision_basis(result: Any) -> str:
    """One line saying what decided a composite classifier's answer (``result.extra``): the view gate and
    its expert, the measured value; "" for a plain network."""
    extra = getattr(result, "extra", None) or {}
    parts = []
    view = extra.get("view")
    if isinstance(view, dict) and view:
        parts.append("view " + " / ".join(f"{k.upper()} {v * 100:.1f}%" for k, v in view.items()))
    if extra.get("expert"):
        parts.append(f"decided by `{extra['expert']}`")
    for key, unit in (("cobb_deg", "°"), ("slip_percent", " %")):
        if isinstance(extra.get(key), (int, float)):
            parts.append(f"{key.split('_')[0]} {extra[key]:.1f}{unit} measured by `{extra.get('measured_by', '?')}`")
    return " · ".join(parts)


def confusion_heatmap(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> Any:
    """Rows true, columns predicted (the SPEC order), counts written in the cells."""
    import plotly.graph_objects as go

    z = np.asarray(cm, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=list(classes), y=list(classes), colorscale="Blues", showscale=False,
                               text=z.astype(int), texttemplate="%{text}"))
    fig.update_layout(title=title, height=120 + 50 * len(classes), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="predicted", yaxis_title="true", yaxis=dict(autorange="reversed"))
    return fig


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> Any:
    """One line per model: ``{name: (fpr, tpr, auc)}`` (macro one-vs-rest for several classes)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, (fpr, tpr, auc) in curves.items():
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {auc:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="gray"), name="chance"))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="false positive rate",
                      yaxis_title="true positive rate", title="ROC (one-vs-rest, macro)")
    return fig


def history_figure(history: list[dict[str, Any]]) -> Any | None:
    """Training curves: every numeric per-epoch metric (losses, validation scores) against the epoch."""
    import plotly.graph_objects as go

    if not history:
        return None
    keys = [k for k in history[-1] if k not in ("epoch", "time_s", "lr", "head_lr") and isinstance(history[-1][k], (int, float))]
    fig = go.Figure()
    xs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for k in keys:
        fig.add_trace(go.Scatter(x=xs, y=[h.get(k) for h in history], mode="lines+markers", name=k))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="epoch")
    return fig


def png_bytes(rgb: np.ndarray) -> bytes:
    """RGB or gray (uint8, or float in [0, 1]) -> PNG bytes for st.image / downloads."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def cobb_overlay(rgb: np.ndarray, cobb: dict[str, Any]) -> np.ndarray:
    """Draw each curve's two end-plate lines (extended) and its angle with the ±5° band."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    t = max(1, round(max(h, w) / 300))
    colors = [(255, 215, 0), (0, 229, 255), (255, 64, 129)]
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


def results_json(results: Sequence[Any], image_info: dict[str, Any] | None = None) -> bytes:
    payload = {"image": image_info or {}, "results": [r.to_dict() for r in results],
               "notice": "Research use only — not a medical device."}
    return json.dumps(payload, indent=2, default=str).encode()


def results_csv(results: Sequence[Any]) -> bytes:
    """One row per (model, finding): class probabilities, boxes, structure areas, measurements."""
    rows: list[dict[str, Any]] = []
    for r in results:
        d = r.to_dict()
        base = {"model_id": d["model_id"], "type": d["type"], "device": d["device"], "elapsed_ms": d["elapsed_ms"]}
        if "probs" in d:
            for c, p in d["probs"].items():
                rows.append({**base, "item": c, "value": p, "note": "predicted" if c == d.get("prediction") else ""})
        if "boxes" in d:
            for b in d["boxes"]:
                rows.append({**base, "item": b["label"], "value": b["score"], "note": " ".join(map(str, b["box"]))})
        if "area_px" in d:
            for s, a in d["area_px"].items():
                rows.append({**base, "item": f"area_px:{s}", "value": a, "note": ""})
            cobb = (d.get("measurements") or {}).get("cobb") or {}
            if cobb.get("cobb_deg") is not None:
                rows.append({**base, "item": "cobb_deg", "value": cobb["cobb_deg"], "note": "±5° band"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["model_id", "type", "device", "elapsed_ms", "item", "value", "note"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def metric_table(metrics: dict[str, dict[str, Any]], classes: Sequence[str]) -> Any:
    """The nine measures per class with CIs, one column per model: rows "class · measure"."""
    import pandas as pd

    measures = ("sensitivity", "specificity", "precision", "npv", "fpr", "fdr", "fnr", "f1")
    rows = []
    for overall in ("accuracy", "balanced_accuracy", "macro_f1", "auc_macro"):
        rows.append({"measure": overall, **{name: m_text(m.get(overall)) for name, m in metrics.items()}})
    for c in classes:
        for meas in measures:
            rows.append({"measure": f"{c} · {meas}",
                         **{name: m_text(((m.get("per_class") or {}).get(c) or {}).get(meas)) for name, m in metrics.items()}})
    return pd.DataFrame(rows).set_index("measure")


def card_summary(card: Any) -> None:
    """A model card rendered as text + tables (Models page, expanders elsewhere)."""
    st.markdown(f"**{card.id}** — {card.task} · `{card.arch}` · view `{card.view}` · input {card.input_size}")
    cols = st.columns(2)
    cols[0].markdown(f"**Trained on:** {card.trained_on or '—'}  \n**Licence:** {card.license or '—'}  \n"
                     f"**Weights:** `{card.weights}`  \n**sha256:** `{(card.sha256 or '')[:16]}…`")
    labels = card.classes or card.structures or []
    cols[1].markdown(f"**{'Classes' if card.classes else 'Structures'}:** {', '.join(labels)}  \n"
                     f"**Intended use:** {card.intended_use}")
    parts = (card.preprocessing or {}).get("components") or {}
    if parts:
        st.markdown("**Built from:** " + ", ".join(f"{role} `{mid}`" for role, mid in parts.items()))
    if card.limitations:
        st.markdown("**Limitations:**\n" + "\n".join(f"- {x}" for x in card.limitations))
    m = card.metrics or {}
    headline = {k: m_text(v) for k, v in m.items() if isinstance(v, dict) and "value" in v}
    for group in ("dice", "iou"):
        for s, v in (m.get(group) or {}).items():
            headline[f"{group} · {s}"] = m_text(v)
    if headline:
        st.table({"metric (95% CI)": list(headline), "value": list(headline.values())})
    if card.audit and card.audit.get("shortcut_warning"):
        st.warning("Shortcut audit: a classifier on image metadata alone beats chance on this model's data — "
                   "the model may be reading acquisition artefacts, not anatomy.")
    st.code(card.train_command or "(no train command recorded)", language="bash")
