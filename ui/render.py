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
           "results_csv", "metric_table", "card_summary", "m_text", "history_figure", "classification_headline",
           "cobb_panel", "slip_panel"]


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


def classification_headline(result: Any) -> str:
    """"**Prediction: scoliosis** (87.0%)", or the model's "no answer: the measurement failed — <reason>"
    when it abstained (a failed measurement is never shown as a finding)."""
    if getattr(result, "abstained", False):
        return f"**No answer** — {result.note}"
    return f"**Prediction: {result.top_class}** ({result.top_prob * 100:.1f}%)"


def cobb_panel(container: Any, cobb: dict[str, Any] | None, structures: Sequence[str] = ()) -> None:
    """The Cobb angle with its +-5 deg band, or "cannot measure — <reason>" (AP segmentations only:
    ``cobb`` None on an AP model's result means no vertebral body was found at all)."""
    from spine_models.measure import cobb_read

    if cobb is None and "pedicle" not in structures:
        return  # not an AP model: no Cobb to speak of
    r = cobb_read(cobb)
    if not r.ok:
        container.metric("Cobb angle", "cannot measure")
        container.warning(r.text)
        return
    band = (cobb or {}).get("band") or [max(0.0, r.value - 5), min(90.0, r.value + 5)]
    container.metric("Cobb angle", r.text, help="manual readings typically fall within ±5°")
    container.caption(f"±5° band: {band[0]:.1f}–{band[1]:.1f}°")


def slip_panel(container: Any, slip: dict[str, Any] | None, structures: Sequence[str] = ()) -> None:
    """Worst lumbar slip with its Meyerding grade, or "cannot measure — <reason>"; the per-level
    numbers and the raw read stay in a collapsed JSON view."""
    from spine_models.measure import public_measurement, slip_read

    if slip is None and "disc_height" not in structures:
        return  # not a lateral model
    r = slip_read(slip)
    container.markdown("**Slip (lateral)**")
    if not r.ok:
        container.metric("Slip", "cannot measure")
        container.warning(r.text)
    else:
        container.metric(f"Slip at {slip.get('level')}", r.text,
                         help="anterior displacement as a share of the lower body's endplate (Meyerding)")
        container.caption(f"Meyerding grade {slip.get('meyerding', slip.get('meyerding_grade'))}")
    if slip:  # collapsed JSON, not an expander: the panel may itself sit in one (they cannot nest)
        container.caption("slip details (per level, disc heights, corners)")
        container.json(public_measurement("slip", slip), expanded=False)


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
    if extra.get("failed") and extra.get("measured_by"):
        parts.append(f"measured by `{extra['measured_by']}`: cannot measure — {extra['failed']}")
    for mid, note in (extra.get("abstained_experts") or {}).items():
        if mid != extra.get("expert"):
            parts.append(f"`{mid}` left out ({note})")
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
    """Draw each curve's two end-plate lines (extended) and its angle with the ±5° band; nothing when the
    read is not a finding (its lines would show a measurement that failed)."""
    import cv2

    from spine_models.measure import cobb_read

    out = np.ascontiguousarray(rgb.copy())
    if not cobb_read(cobb).ok:
        return out
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
    """The results as downloaded: a failed or unreliable Cobb / slip read carries "cannot measure — <reason>"
    and None at its value keys (the algorithm's output kept under ``unreliable_read``)."""
    from spine_models.measure import public_result

    payload = {"image": image_info or {}, "results": [public_result(r.to_dict()) for r in results],
               "notice": "Research use only — not a medical device."}
    return json.dumps(payload, indent=2, default=str).encode()


def results_csv(results: Sequence[Any]) -> bytes:
    """One row per (model, finding): class probabilities, boxes, structure areas, measurements."""
    rows: list[dict[str, Any]] = []
    for r in results:
        d = r.to_dict()
        base = {"model_id": d["model_id"], "type": d["type"], "device": d["device"], "elapsed_ms": d["elapsed_ms"]}
        if d.get("abstained"):
            rows.append({**base, "item": "prediction", "value": None, "note": d.get("note", "")})
        elif "probs" in d:
            for c, p in d["probs"].items():
                rows.append({**base, "item": c, "value": p, "note": "predicted" if c == d.get("prediction") else ""})
        if "boxes" in d:
            for b in d["boxes"]:
                rows.append({**base, "item": b["label"], "value": b["score"], "note": " ".join(map(str, b["box"]))})
        if "area_px" in d:
            for s, a in d["area_px"].items():
                rows.append({**base, "item": f"area_px:{s}", "value": a, "note": ""})
            from spine_models.measure import cobb_read, slip_read

            meas = d.get("measurements") or {}
            if "cobb" in meas or "pedicle" in d.get("structures", []):
                r = cobb_read(meas.get("cobb"))
                rows.append({**base, "item": "cobb_deg", "value": r.value if r.ok else None,
                             "note": "±5° band" if r.ok else r.text})
            if "slip" in meas or "disc_height" in d.get("structures", []):
                r = slip_read(meas.get("slip"))
                slip = meas.get("slip") or {}
                rows.append({**base, "item": "slip_percent", "value": r.value if r.ok else None,
                             "note": f"{slip.get('level')} · Meyerding {slip.get('meyerding')}" if r.ok else r.text})
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


__all__ += ["validation_label", "provenance_markdown"]


def validation_label(card: Any, *, uploaded: bool) -> None:
    """Under every result: where its model was validated. On an uploaded film (anything not a generated phantom
    example) a phantom-only model gets the phantom-trained label as a warning; otherwise the badge is a caption."""
    from spine_models.models.cards import is_real_validated, validation_badge

    badge = validation_badge(card)
    if uploaded and not is_real_validated(card):
        st.warning(badge)
    else:
        st.caption(badge)


def provenance_markdown(card: Any) -> str:
    """The card's validation badge, its ``validated_on`` entries with their figures, and the credit line of every
    data source with its licence (Models page)."""
    from spine_models.models.cards import validation_badge
    from spine_models.models.provenance import metric_phrase

    validated = []
    for e in getattr(card, "validated_on", None) or []:
        figures = "; ".join(metric_phrase(k, v) for k, v in (e.get("metrics") or {}).items()) or "no figures"
        where = f" — {e['evaluation']}" if e.get("evaluation") else ""
        validated.append(f"- validated on {e['data']} ({'real' if e.get('real') else 'phantom'}): {figures}{where}")
    sources = getattr(card, "sources", None) or []
    credits = ("**Credits (data sources and licences):**" if sources else
               "**Credits:** the card names no data sources (docs/add_validated_on.py fills them)")
    blocks = [f"**Validation:** {validation_badge(card)}", "\n".join(validated),
              "\n".join([credits, *(f"- `{s['data']}` — {s['license']}: {s['credit']}" for s in sources)])]
    return "\n\n".join(b for b in blocks if b)


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
    st.markdown(provenance_markdown(card))
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
