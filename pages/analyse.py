"""Analyse X-ray: upload a film (or pick a phantom example), run the fitting models, read the results."""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from spine_models.errors import SpineInputError
from spine_models.io import apply_window
from spine_models.metrics.segmentation import dice
from spine_models.report.findings import CLASS_WORDS, findings
from ui import analysis, render
from ui.models import NO_MODELS_HINT, max_upload_mb, shipped_cards
from ui.state import K
from ui.router import ensure_router

ensure_router()

st.title("Analyse X-ray")
st.caption("Research use only — not a medical device. Findings are model outputs for a qualified reader to review.")

# ---- the image -------------------------------------------------------------------------------------
source = st.radio("Image", ["Upload a film", "Phantom example"], horizontal=True, key=K.XRAY_SOURCE)
rad, image_key = None, None
try:
    if source == "Upload a film":
        up = st.file_uploader("Film: PNG, JPG, TIFF or DICOM", key=K.XRAY_UPLOAD,
                              help=f"Up to {max_upload_mb()} MB per file. DICOM headers are de-identified on reading.")
        if up is not None:
            data = up.getvalue()
            rad = analysis.read_upload(data, up.name)
            image_key = hashlib.sha256(data).hexdigest()
    else:
        kind = st.selectbox("Phantom view", analysis.EXAMPLE_KINDS, format_func=lambda k: {"xray-ap": "AP", "xray-lat": "lateral"}[k])
        films = analysis.example_films(kind)
        pick = st.selectbox("Example film", films, format_func=lambda p: Path(p).name, key=K.XRAY_EXAMPLE)
        data = Path(pick).read_bytes()
        rad = analysis.read_upload(data, Path(pick).name)
        image_key = hashlib.sha256(data).hexdigest()
except SpineInputError as exc:
    st.error(str(exc))
    rad = None

if rad is None:
    st.info("Upload a film or pick a phantom example to start.")
    st.stop()

left, right = st.columns([3, 2])
with right:
    shown = rad.pixels
    if rad.format == "DICOM":
        st.markdown("**Window / level** (display only; models see the stored image)")
        c = st.slider("Level (centre)", 0.0, 1.0, 0.5, 0.01, key=K.XRAY_WINDOW_C)
        w = st.slider("Window (width)", 0.02, 1.0, 1.0, 0.01, key=K.XRAY_WINDOW_W)
        shown = apply_window(rad.pixels, c, w)
    with st.expander("Image header (de-identified)", expanded=False):
        st.json(rad.to_dict(), expanded=1)
# ---- the models ------------------------------------------------------------------------------------
cards = shipped_cards()
if cards:  # the caption shows the view the models will see: the film's own tag, else the view model's answer
    rad, view_note = analysis.infer_view(rad, cards)
else:
    view_note = ""
with left:
    st.image(render.png_bytes(shown), caption=f"{rad.name} · {rad.width}×{rad.height} · {rad.bits}-bit · view {rad.view or 'unknown'}",
             width=min(480, max(240, rad.width)))
    if view_note:
        st.caption(view_note)
if not cards:
    st.warning(NO_MODELS_HINT)
    st.stop()
fitting = analysis.fitting_cards(cards, rad)
if not fitting:
    st.warning(f"None of the {len(cards)} shipped models fits this image (view {rad.view or 'unknown'}, "
               f"modality {rad.modality or 'none'}).")
    st.stop()
default_ids, default_note = analysis.default_models(fitting, uploaded=source == "Upload a film")
chosen_ids = st.multiselect("Models to run", [c.id for c in fitting], default=default_ids,
                            key=f"{K.XRAY_MODELS}_{image_key[:16]}")  # one choice per film: each starts from its own default
if default_note:
    st.caption(default_note)
chosen = [c for c in fitting if c.id in chosen_ids]
run_key = (image_key, tuple(chosen_ids))
state = st.session_state.get(K.XRAY_RESULTS)
if chosen and (state is None or state["key"] != run_key):
    with st.spinner(f"Running {len(chosen)} model(s)…"):
        results, timings = analysis.run_models(rad, chosen)
    state = {"key": run_key, "results": results, "timings": timings}
    st.session_state[K.XRAY_RESULTS] = state
if not chosen or state is None:
    st.info("Choose at least one model.")
    st.stop()

results, timings = state["results"], state["timings"]
card_of = {c.id: c for c in chosen}
total = sum(timings.values())
st.success(f"{len(results)} model(s) ran in {total / 1000:.2f} s on {results[0].device if results else '?'}")

# ---- findings first: what a clinician reads at a glance --------------------------------------------
render.findings_panel(findings(results, chosen), uploaded=source == "Upload a film")

# ---- each model's own output, collapsed ------------------------------------------------------------
st.markdown("**Each model's output** (open a section for its overlay, probabilities and maps)")
for res in results:
    card = card_of.get(res.model_id)
    kind = type(res).__name__
    with st.expander(f"{res.model_id} · {card.task if card else ''} — {render.result_summary(res)}", expanded=False):
        st.caption(f"device {res.device} · inference {res.elapsed_ms:.0f} ms · wall {timings.get(res.model_id, 0):.0f} ms")
        if card is not None:  # an uploaded film is never a generated phantom example: phantom-only models say so
            render.validation_label(card, uploaded=source == "Upload a film")
        if kind == "ClassificationResult":
            chart, a, b = st.columns([2, 1, 1])
            chart.markdown(render.classification_headline(res))
            if not res.abstained:  # an abstaining model has no probabilities to draw
                chart.plotly_chart(render.prob_bars(res), key=f"probs_{res.model_id}")
            for line in (render.threshold_note(res), render.decision_basis(res)):
                if line:
                    chart.caption(line)
            a.image(render.png_bytes(res.plot(rad.pixels, "cam")), width="stretch",
                    caption="Grad-CAM" if res.cam is not None else "no Grad-CAM: a measurement decided")
            if res.shap is not None:
                b.image(render.png_bytes(res.plot(rad.pixels, "shap")), caption="SHAP (partition)", width="stretch")
            elif b.button("Compute SHAP (takes seconds)", key=f"{K.XRAY_SHAP}_{res.model_id}"):
                bar = b.progress(0.0, text="SHAP…")
                new = analysis.compute_shap(card, rad, progress=lambda i, n: bar.progress(min(1.0, i / max(n, 1)), text=f"SHAP {i}/{n}"))
                res.shap = new.shap
                st.rerun()
        elif kind == "DetectionResult":
            pic, info = st.columns([1, 3])
            pic.image(render.png_bytes(res.plot(rad.pixels)), caption=f"boxes with score ≥ {res.threshold:.2f}", width="stretch")
            info.markdown(" · ".join(f"**{CLASS_WORDS.get(c, c)}**: {'present' if v else 'not detected'}"
                                     for c, v in res.findings().items()))
            weak = info.checkbox("Show boxes below the threshold", value=False, key=f"det_weak_{res.model_id}")
            rows = [{**b.to_dict(), "label": CLASS_WORDS.get(b.label, b.label)} for b in res.boxes
                    if weak or b.score >= res.threshold]
            if rows:
                info.dataframe(rows[:50], width="stretch")
            else:
                info.caption(f"no box at score ≥ {res.threshold:.2f}")
        elif kind == "SegmentationResult":
            pic, info = st.columns([1, 3])
            with info:
                show = [s for s in res.structures if st.checkbox(s, value=True, key=f"seg_{res.model_id}_{s}")]
            overlay = res.plot(rad.pixels, show=show)
            cobb = res.measurements.get("cobb") or {}
            if cobb:
                overlay = render.cobb_overlay(overlay, cobb)
            pic.image(render.png_bytes(overlay), caption="segmentation overlay", width="stretch")
            render.cobb_panel(info, res.measurements.get("cobb"), res.structures)  # "cannot measure — why" when it failed
            render.slip_panel(info, res.measurements.get("slip"), res.structures)
            gt = info.file_uploader("Ground-truth mask for Dice (PNG, white = structure)", key=f"{K.XRAY_MASK_UPLOAD}_{res.model_id}")
            if gt is not None:
                structure = info.selectbox("Structure of this mask", res.structures, key=f"{K.XRAY_MASK_STRUCTURE}_{res.model_id}")
                try:
                    truth = analysis.read_mask_upload(gt.getvalue(), gt.name, res.masks[structure].shape)
                    info.metric(f"Dice · {structure}", f"{dice(res.masks[structure], truth):.3f}")
                except SpineInputError as exc:
                    info.error(str(exc))
            info.download_button("Overlay PNG", render.png_bytes(overlay), f"{res.model_id}_overlay.png", "image/png",
                               key=f"dl_png_{res.model_id}")


# ---- downloads -------------------------------------------------------------------------------------
# on_click="ignore": a download never reruns the analysis; the reports are built only when clicked (deferred data)
st.subheader("Downloads")
header = rad.to_dict()
d1, d2, d3, d4 = st.columns(4)
d1.download_button("Results JSON", render.results_json(results, header, chosen), "spine_lab_results.json", "application/json",
                   on_click="ignore")
d2.download_button("Results CSV", render.results_csv(results), "spine_lab_results.csv", "text/csv", on_click="ignore")
d3.download_button("Clinician report (HTML)", lambda: analysis.report_html(results, rad.pixels, header, chosen),
                   "spine_lab_report.html", "text/html", on_click="ignore")
d4.download_button("Clinician report (PDF)", lambda: analysis.report_pdf(results, rad.pixels, header, chosen),
                   "spine_lab_report.pdf", "application/pdf", on_click="ignore")
