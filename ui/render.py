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

from spine_models.report.drawing import cobb_overlay  # the one Cobb drawing, shared with the clinician report

__all__ = ["prob_bars", "confusion_heatmap", "roc_figure", "png_bytes", "cobb_overlay", "results_json",
           "results_csv", "metric_table", "card_summary", "m_text", "history_figure", "classification_headline",
           "cobb_panel", "slip_panel", "findings_panel", "threshold_note", "result_summary",
           "run_card_metrics", "metric_texts", "disc_panel", "model_choice", "evaluation_progress", "left_out_note"]


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
    if result.threshold is not None and len(result.classes) == 2:  # the line the positive class must cross
        fig.add_vline(x=float(result.threshold), line_dash="dash", line_color="#b00020",
                      annotation_text=f"threshold {float(result.threshold) * 100:.0f}%", annotation_position="top")
    return fig


def threshold_note(result: Any) -> str:
    """What the bars mean: the decision rule (threshold on the positive class, or the largest probability), a
    borderline mark, and that the probabilities are the network's scores, not calibrated risks."""
    from spine_models.report.findings import is_borderline

    if getattr(result, "abstained", False) or not result.probs:
        return ""
    if result.threshold is not None and len(result.classes) == 2:
        rule = f"calls **{result.classes[1]}** when P({result.classes[1]}) ≥ {float(result.threshold) * 100:.1f}% (the card's threshold)"
    else:
        rule = "calls the class with the largest probability"
    return (rule + (" · **borderline call**" if is_borderline(result.probs, result.threshold) else "")
            + " · probabilities are uncalibrated model scores, not the chance of disease")


_STATUS_ICON = {"present": ":red[:material/error:]", "absent": ":green[:material/check_circle:]", "no answer": ":gray[:material/help:]"}


def findings_panel(found: Sequence[Any], *, uploaded: bool) -> None:
    """The answer a clinician reads first (``spine_models.report.findings``): one line per finding from its most
    trustworthy model, whether the other models agree, and every model's say with its provenance in a table."""
    import pandas as pd

    st.subheader("Findings")
    if not found:
        st.info("No model that ran speaks about scoliosis, spondylolisthesis or implants.")
        return
    for f in found:
        icon = ":orange[:material/warning:]" if f.lead is not None and f.lead.borderline else \
            _STATUS_ICON.get(f.status, ":gray[:material/help:]")
        agree = {"agree": "models agree", "disagree": "**models disagree**", "one model": "one model",
                 "no model answered": "no model could answer"}[f.agreement]
        st.markdown(f"{icon} **{f.headline}**  \n<small>{agree} · from `{f.lead.model_id}` · {f.lead_source}</small>",
                    unsafe_allow_html=True)
        if uploaded and f.phantom_only:
            st.caption("Only phantom-trained models spoke about this finding: it is not validated on real films.")
    with st.expander("Which model said what (provenance of every vote)", expanded=False):
        rows = [{"finding": f.name, "model": v.model_id, "says": v.says, "detail": v.detail,
                 "validation": v.badge} for f in found for v in f.votes]
        st.dataframe(pd.DataFrame(rows), width="stretch", hide_index=True)


def result_summary(result: Any) -> str:
    """A short tag for a collapsed model section: its call, its measured value or "cannot measure"."""
    from spine_models.measure import cobb_read, slip_read

    kind = type(result).__name__
    if kind == "ClassificationResult":
        return "no answer" if result.abstained else f"{result.top_class} ({result.top_prob * 100:.0f}%)"
    if kind == "DetectionResult":
        hits = [c for c, v in result.findings().items() if v]
        return ", ".join(hits) + " detected" if hits else "nothing detected at its threshold"
    if kind == "SegmentationResult":
        m = result.measurements or {}
        if "cobb" in m or "pedicle" in result.structures:
            r = cobb_read(m.get("cobb"))
            line = (m.get("cobb") or {}).get("centreline_deg")
            if r.ok and isinstance(line, (int, float)):
                return f"Cobb {r.text}, centreline {line:.1f}°"
            return f"Cobb {r.text}" if r.ok else "Cobb: cannot measure"
        if "slip" in m:
            r = slip_read(m.get("slip"))
            return f"slip {r.text}" if r.ok else "slip: cannot measure"
    return ""


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
    if isinstance((cobb or {}).get("centreline_deg"), (int, float)):
        container.caption(f"Column centreline: {cobb['centreline_deg']:.1f}° (a smooth curve through the body centres, "
                          "drawn in green; scoliosis is called only when it bends ≥ 10° too)")
    for note in (cobb or {}).get("notes") or []:  # how the reading was made, e.g. one of two readings failed
        container.caption(str(note))


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
    keys = [k for k in history[-1] if k not in ("epoch", "time_s", "lr", "head_lr", "steps") and isinstance(history[-1][k], (int, float))]
    fig = go.Figure()
    xs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for k in keys:
        fig.add_trace(go.Scatter(x=xs, y=[h.get(k) for h in history], mode="lines+markers", name=k))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="epoch")
    return fig


def png_bytes(rgb: np.ndarray) -> bytes:
    """RGB or gray (uint8, or float in [0, 1]) -> PNG bytes for st.image / downloads. zlib level 3, not Pillow's
    default 6: film overlays encode several times faster at about the same size, and the Analyse page encodes
    several per film (PNG encoding was a visible share of a warm analysis under a profiler)."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def results_json(results: Sequence[Any], image_info: dict[str, Any] | None = None, cards: Sequence[Any] | None = None) -> bytes:
    """The results as downloaded: the findings panel first (``report.findings``, each vote with its provenance), then
    each model's result; a failed or unreliable Cobb / slip read carries "cannot measure — <reason>" and None at its
    value keys (the algorithm's output kept under ``unreliable_read``)."""
    from spine_models.measure import public_result
    from spine_models.report.findings import findings

    payload = {"image": image_info or {}, "findings": [f.to_dict() for f in findings(results, cards)],
               "results": [public_result(r.to_dict()) for r in results],
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


def metric_texts(metrics: dict[str, Any] | None) -> dict[str, str]:
    """A card's or report's headline figures as text with CIs: every ``{"value", "ci95"}`` key, then Dice and IoU
    per structure ("dice · vertebra"). The one table the Models, Train and Compare pages show."""
    m = metrics or {}
    out = {k: m_text(v) for k, v in m.items() if isinstance(v, dict) and "value" in v}
    for group in ("dice", "iou"):
        for s, v in (m.get(group) or {}).items():
            out[f"{group} · {s}"] = m_text(v)
    return out


def card_summary(card: Any) -> None:
    """A model card rendered as text + tables (Models page, expanders elsewhere)."""
    st.markdown(f"**{card.id}** — {card.task} · `{card.arch}` · view `{card.view}` · input {card.input_size}")
    cols = st.columns(2)
    cols[0].markdown(f"**Trained on:** {card.trained_on or '—'}  \n**Licence:** {card.license or '—'}  \n"
                     f"**Weights:** `{card.weights}`  \n**sha256:** `{(card.sha256 or '')[:16]}…`")
    labels = card.classes or card.structures or []
    cols[1].markdown(f"**{'Classes' if card.classes else 'Structures'}:** {', '.join(labels)}  \n"
                     f"**Intended use:** {card.intended_use}")
    parts = dict((card.preprocessing or {}).get("components") or {})
    if (card.arch_kwargs or {}).get("locator"):
        parts["locator"] = str(card.arch_kwargs["locator"])
    reader = (card.preprocessing or {}).get("level_reader")
    if isinstance(reader, dict) and reader.get("card"):
        parts["level reader"] = str(reader["card"])
    if parts:
        st.markdown("**Built from:** " + ", ".join(f"{role} `{mid}`" for role, mid in parts.items()))
    st.markdown(provenance_markdown(card))
    if card.limitations:
        st.markdown("**Limitations:**\n" + "\n".join(f"- {x}" for x in card.limitations))
    headline = metric_texts(card.metrics)
    if headline:
        st.table({"metric (95% CI)": list(headline), "value": list(headline.values())})
    if card.audit and card.audit.get("shortcut_warning"):
        st.warning("Shortcut audit: a classifier on image metadata alone beats chance on this model's data — "
                   "the model may be reading acquisition artefacts, not anatomy.")
    st.code(card.train_command or "(no train command recorded)", language="bash")


def run_card_metrics(card_path: Any) -> None:
    """A finished run's card: its headline metrics with CIs (what it will be judged by) and where it was validated."""
    from spine_models.models.cards import ModelCard, validation_badge

    card = ModelCard.from_json(card_path)
    rows = metric_texts(card.metrics)
    st.caption(f"card `{card.id}` · {validation_badge(card)}")
    if rows:
        st.table({"metric (95% CI)": list(rows), "value": list(rows.values())})


def disc_panel(result: Any, pixels: np.ndarray, card: Any, *, uploaded: bool) -> None:
    """A DiscGradingResult: the slice with every disc's box, level and grade; one row per level (grading schema);
    why levels or grades are missing; the model's provenance; Grad-CAM per disc when computed."""
    import pandas as pd

    st.image(png_bytes(result.plot(pixels)), width=420,
             caption=f"{len(result.discs)} disc(s) found by {card.id}"
             + (" — levels counted up from the lumbosacral disc" if result.levels_reliable else ""))
    if result.note:
        st.warning(result.note)
    if result.discs:
        st.dataframe(pd.DataFrame(result.table()), width="stretch", hide_index=True)
        if any(d.pfirrmann is not None for d in result.discs):
            from spine_models.results.discs import FINDING_LABELS

            th = ", ".join(f"{FINDING_LABELS.get(k, k)} at P ≥ {v:.2f}" for k, v in result.thresholds.items())
            st.caption(f"Pfirrmann grade 1 (normal) to 5 (collapsed): the most probable grade, with its probability. "
                       f"Findings called {th} (thresholds chosen on validation discs). Disc state by the documented rule "
                       "(herniation > bulge > degeneration if Pfirrmann ≥ 3 or narrowed > normal). "
                       "Uncalibrated model scores.")
    cams = [(d.level or "?", _heat(d.cam, d.crop)) for d in result.discs if d.cam is not None]
    if cams:
        st.caption("Grad-CAM of the predicted Pfirrmann grade on each disc crop (upright; red = most influence)")
        cols = st.columns(min(6, len(cams)))
        for col, (lvl, c) in zip(cols, cams):
            col.image(png_bytes(c), caption=lvl, width="stretch")
    validation_label(card, uploaded=uploaded)


def _heat(cam: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """A disc's CAM over its grey crop (the one heat-map blend, results.base.heat_overlay)."""
    from spine_models.results.base import heat_overlay

    return heat_overlay(crop, cam)


def model_choice(cards: Sequence[Any], *, key: str) -> Any:
    """One model out of several (the first by default), labelled with its id and validation badge."""
    from spine_models.models.cards import validation_badge

    if len(cards) == 1:
        return cards[0]
    ids = [c.id for c in cards]
    pick = st.selectbox("Disc model", ids, key=key, format_func=lambda i: f"{i} — {validation_badge(cards[ids.index(i)])[:80]}")
    return cards[ids.index(pick)]


def evaluation_progress(tick: Any, model_id: str, index: int, n_models: int) -> tuple[float, str]:
    """The Compare page's bar for model ``index`` of ``n_models`` from an engine's progress ``tick``
    (``spine_models._progress.Tick``): the fraction done overall and "model (k/n) · evaluate 40/187 films ·
    12.3 films/s"."""
    part = min(1.0, tick.done / tick.total) if tick.total else 0.0
    of = f"/{tick.total}" if tick.total else ""
    rate = f" · {tick.rate:.1f} films/s" if tick.rate else ""
    text = f"Evaluating {model_id} ({index + 1}/{n_models}) · {tick.desc or 'films'} {tick.done}{of} films{rate}"
    return min(1.0, (index + part) / max(1, n_models)), text



def left_out_note(problems: Sequence[str], show: int = 3) -> str:
    """One warning for the files a study scan left out: how many, the first ``show`` problem lines (each names its
    file by its neutral id and says why), and how many more."""
    n = len(problems)
    more = f"; … and {n - show} more" if n > show else ""
    return f"{n} file(s) left out of this study (unreadable or refused): " + "; ".join(problems[:show]) + more

