"""Compare models: two or more models on one dataset — confusion matrices, the nine measures with CIs,
ROC, McNemar, where they disagree, and the shortcut-audit warning."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from spine_models.errors import SpineInputError
from ui import analysis, render
from ui.models import NO_MODELS_HINT, all_cards, max_upload_mb
from ui.state import K
from ui.router import ensure_router

ensure_router()

SMALL_N_PATIENTS = 30  # below this many patients a bootstrap CI is too unstable to read without a caveat

st.title("Compare models")
st.caption("Evaluation reports as `spine-models evaluate` writes them; cached by (weights sha256, data hash).")

cards = all_cards(include_runs=True)
if len(cards) < 1:
    st.info(NO_MODELS_HINT)
    st.stop()
task = st.selectbox("Task", sorted({c.task for c in cards}))
pool = [c for c in cards if c.task == task]
chosen_ids = st.multiselect("Models (two or more; finished training runs are listed as run:<job>)",
                            [c.id for c in pool], default=analysis.default_pair(pool), key=K.CMP_MODELS)
chosen = [next(c for c in pool if c.id == i) for i in chosen_ids]  # in the user's order

source = st.radio("Data", ["Phantom (generated here)", "Folder path", "Upload a ZIP"], horizontal=True, key=K.CMP_SOURCE)
data_paths: list[str] = []
try:
    if source == "Phantom (generated here)":
        kind = st.selectbox("Phantom kind", ["xray-ap", "xray-lat"], key=K.CMP_PHANTOM_KIND)
        n = st.number_input("Films", 6, 500, 24, key=K.CMP_PHANTOM_N)
        if st.button("Generate / use phantom data"):
            st.session_state["_cmp_phantom"] = analysis.phantom_dataset(kind, int(n))
        if st.session_state.get("_cmp_phantom"):
            data_paths = [st.session_state["_cmp_phantom"]]
    elif source == "Folder path":
        folder = st.text_input("Dataset folder on this server (class folders, synth layout, YOLO, COCO, …)", key=K.CMP_FOLDER)
        data_paths = [folder] if folder else []
    else:
        up = st.file_uploader("Dataset ZIP", type=["zip"], key=K.CMP_UPLOAD, help=f"Up to {max_upload_mb()} MB.")
        if up is not None:
            data_paths = [str(analysis.save_upload(up.getvalue(), up.name))]
except SpineInputError as exc:
    st.error(str(exc))
if data_paths:
    st.caption("Data: " + ", ".join(data_paths))

held_out = False
if data_paths and chosen:
    try:
        overlaps = {c.id: o for c in chosen if (o := analysis.training_overlap(c, data_paths, task))}
    except SpineInputError as exc:
        overlaps = {}
        st.error(str(exc))
    for mid, o in overlaps.items():
        st.warning(f"`{mid}` was trained and validated on this data ({o['source']}): {o['seen']} of {o['n']} films "
                   "were its training or validation films, so its scores on them are optimistic.")
    if overlaps:
        held_out = st.checkbox("Held-out films only (the test part of each model's own patient split)", value=True,
                               key=K.CMP_HELD_OUT)

resamples = st.select_slider("Bootstrap resamples", [200, 1000, 2000], value=1000, key=K.CMP_RESAMPLES)
if not st.button("Evaluate", type="primary", disabled=len(chosen) < 2 or not data_paths, key=K.CMP_RUN):
    if len(chosen) < 2:
        st.info("Pick at least two models of the same task.")
    st.stop()

reports: dict[str, dict] = {}
bar = st.progress(0.0, text="Evaluating…")
try:
    data_hash = analysis.dataset_hash(data_paths, task)
    for i, card in enumerate(chosen):
        bar.progress(i / len(chosen), text=f"Evaluating {card.id} ({i + 1}/{len(chosen)})…")
        reports[card.id] = analysis.evaluate_watched(
            lambda tick, i=i, card=card: bar.progress(*render.evaluation_progress(tick, card.id, i, len(chosen))),
            analysis.model_ref(card), card.sha256 or "", tuple(data_paths), data_hash, int(resamples),
            "test" if held_out else "all")
except SpineInputError as exc:
    bar.empty()
    st.error(str(exc))
    st.stop()
bar.progress(1.0, text="Done")

if any(r.get("audit", {}).get("shortcut_warning") for r in reports.values()):
    ba = next(iter(reports.values()))["audit"]["metadata_baseline"]["balanced_accuracy"]
    st.error(f"⚠️ Shortcut warning: a classifier on image metadata alone (size, bit depth, intensity statistics) "
             f"reaches balanced accuracy {render.m_text(ba)} on this data — well above chance. High scores here may "
             "come from acquisition differences between classes, not from anatomy.")

first = next(iter(reports.values()))
st.caption(f"{first['data']['n']} images, {first['data']['n_patients']} patients, classes {', '.join(first['data']['classes'])}"
           + (" · held-out part only" if held_out else ""))
if first["data"]["n_patients"] < SMALL_N_PATIENTS:
    st.warning(f"Only {first['data']['n_patients']} patients: the 95% CIs below are wide and unstable, and a perfect "
               "score such as 1.000 (1.000–1.000) says little — a bootstrap over so few patients cannot show the "
               "model's error rate.")
if task == "classify":
    classes = first["data"]["classes"]
    cols = st.columns(len(reports))
    for col, (name, rep) in zip(cols, reports.items()):
        col.plotly_chart(render.confusion_heatmap(rep["metrics"]["confusion_matrix"], classes, title=name), key=f"cm_{name}")
    st.subheader("Measures (95% CI)")
    table = render.metric_table({n: r["metrics"] for n, r in reports.items()}, classes)
    st.dataframe(table, width="stretch")
    st.download_button("Measures CSV", table.to_csv().encode(), "spine_lab_measures.csv", "text/csv", key="cmp_csv")
    curves = analysis.roc_curves(reports)
    if curves:
        st.plotly_chart(render.roc_figure(curves), key="roc")
else:
    import pandas as pd

    flat = {n: render.metric_texts(r["metrics"]) for n, r in reports.items()}
    table = pd.DataFrame(flat)
    st.dataframe(table, width="stretch")
    st.download_button("Measures CSV", table.to_csv().encode(), "spine_lab_measures.csv", "text/csv", key="cmp_csv")

names = list(reports)
if len(names) >= 2:
    from spine_models.metrics.paired import mcnemar
    from spine_models.report.evaluation import paired_table

    st.subheader("McNemar (paired, same images)")
    for other in names[1:]:
        try:
            res = mcnemar(paired_table(reports[names[0]]["predictions"], reports[other]["predictions"]))
            st.markdown(f"**{names[0]} vs {other}:** p = {res['p_value']:.4g} ({res['method']}; "
                        f"{res['b']} images only {names[0]} got right, {res['c']} only {other})")
        except SpineInputError as exc:
            st.info(f"{names[0]} vs {other}: {exc}")

dis = analysis.disagreements(reports)
st.subheader(f"Where the models disagree ({len(dis)} images)")
if dis:
    paths = analysis.image_paths(data_paths, task)
    gallery = st.columns(4)
    for k, row in enumerate(dis[:12]):
        p = paths.get(row["id"])
        if p and Path(p).is_file():
            rad = analysis.read_upload(Path(p).read_bytes(), Path(p).name)
            label = f"{row['image']} · truth {row['truth']} · " + " / ".join(f"{n}: {row[n]}" for n in names)
            gallery[k % 4].image(render.png_bytes(rad.pixels), caption=label, width="stretch")
    st.dataframe([{k: v for k, v in row.items() if k != "id"} for row in dis], width="stretch")
