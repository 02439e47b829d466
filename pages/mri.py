"""MRI study: a folder or ZIP of DICOM series; the frames chosen per disc level and why; ROI; disc states."""
from __future__ import annotations

import streamlit as st

from spine_models.errors import SpineInputError
from ui import analysis, render
from ui.models import max_upload_mb, shipped_cards
from ui.state import K
from ui.router import ensure_router

ensure_router()

st.title("MRI study")
st.caption("A lumbar MRI study (T2 sagittal, T2 axial, myelography) as a ZIP or a folder on the server. "
           "Research use only — not a medical device.")

SLICE = "Sagittal slice (PNG/JPG/DICOM)"
source = st.radio("Study", ["Upload a ZIP", "Folder path", "Phantom example", SLICE], horizontal=True, key=K.MRI_EXAMPLE)
folder, study = None, None
disc_models = analysis.disc_cards(shipped_cards())
if source == SLICE:
    st.caption("One sagittal lumbar slice, in any orientation: every disc is found, named from the lumbosacral disc "
               "upwards and graded (Pfirrmann and the findings the grader's card names: the shipped grader reads "
               "herniation, bulging, narrowing, Modic change and endplate changes).")
    up = st.file_uploader("Sagittal slice", type=["png", "jpg", "jpeg", "dcm"], key=K.MRI_SLICE,
                          help=f"Up to {max_upload_mb()} MB. Headers are de-identified on reading; the file name is not kept.")
    if up is None:
        st.info("Choose a sagittal slice to start.")
        st.stop()
    try:
        rad = analysis.read_upload(up.getvalue(), up.name)
    except SpineInputError as exc:
        st.error(str(exc))
        st.stop()
    if not disc_models:
        st.info("No disc model is shipped: train one with `spine-models train --task segment` on the disc-grading layout.")
        st.stop()
    card = render.model_choice(disc_models, key=K.MRI_DISC_MODEL)
    render.disc_panel(analysis.grade_slice(card, rad.pixels, cam=True), rad.pixels, card, uploaded=True)
    st.stop()
try:
    if source == "Upload a ZIP":
        up = st.file_uploader("Study ZIP (DICOM series inside)", type=["zip"], key=K.MRI_UPLOAD,
                              help=f"Up to {max_upload_mb()} MB. Headers are de-identified on reading.")
        if up is not None:
            folder = analysis.extract_upload_zip(up.getvalue(), up.name)
    elif source == "Folder path":
        folder = st.text_input("Folder on this server", key=K.MRI_FOLDER) or None
    else:
        folder = analysis.mri_example()
    if folder:
        study = analysis.load_study(folder)
except SpineInputError as exc:
    st.error(str(exc))

if study is None:
    st.info("Choose a study to start.")
    st.stop()

if study.problems:  # unreadable files are left out, never silently: each named by its neutral id
    st.warning(render.left_out_note(study.problems))
st.subheader("Series")
st.dataframe([{k: v for k, v in s.to_dict().items() if k not in ("instance_numbers", "uid")} for s in study.series],
             width="stretch")
for s in study.series:
    with st.expander(f"{s.description or '(no description)'} — {s.frames} frames, {s.orientation or 'unknown plane'}"):
        idx = st.slider("Frame", 1, s.frames, (s.frames + 1) // 2, key=f"frame_{s.uid}") if s.frames > 1 else 1
        st.image(render.png_bytes(s.frame(idx)), caption=f"frame {idx} of {s.frames}", width=360)

st.subheader("Frame selection per disc level")
selection_problems: list[str] = []
try:
    choices = analysis.mri_selection(folder, selection_problems)
except SpineInputError as exc:
    st.error(str(exc))
    st.stop()
if selection_problems and not study.problems:
    st.warning(render.left_out_note(selection_problems))
st.dataframe([{"image": c.name, "level": c.level or "mid-sagittal", "series": c.series_description,
               "frame": c.frame, "why": c.reason} for c in choices], width="stretch")

sag_view = analysis.sagittal_overlay(choices)
if sag_view is not None:
    img, n_lines = sag_view
    st.image(render.png_bytes(img), width=420,
             caption=f"the chosen mid-sagittal frame with the {n_lines} chosen axial slice(s) drawn where they cut it"
             + ("" if n_lines else " (no slice position in the headers: nothing to draw)"))

sag = analysis.sagittal_frame(choices)
if sag is not None and disc_models:
    st.subheader("Discs on the mid-sagittal frame")
    pixels, choice = sag
    card = render.model_choice(disc_models, key=K.MRI_DISC_MODEL)
    st.caption(f"frame {choice.frame} of {choice.series_description or 'the sagittal series'} ({choice.reason})")
    render.disc_panel(analysis.grade_slice(card, pixels, cam=False), pixels, card, uploaded=source != "Phantom example")

st.subheader("ROI blocks (13×8 grid, blocks 30+13x+y)")
axial = [c for c in choices if c.kind == "ax" and c.available]
if axial:
    cols = st.columns(min(5, len(axial)))
    for col, ch in zip(cols, axial):
        col.image(render.png_bytes(analysis.roi_overlay(analysis.frame_pixels(ch))), caption=f"{ch.level} · frame {ch.frame}",
                  width="stretch")
else:
    st.info("No axial frame could be chosen, so there is no ROI to show.")

st.subheader("Disc state per level")
mri_cards = [c for c in shipped_cards() if c.view == "mri" and c.task == "classify"]
if not mri_cards:
    st.info("No shipped MRI disc-state model yet — train one on the Train page (task classify on MRI study "
            "folders, `roi: true`) and promote it.")
else:
    st.dataframe(analysis.disc_predictions(mri_cards, choices), width="stretch")
    for card in mri_cards:  # a study not generated here: phantom-only disc models say so
        render.validation_label(card, uploaded=source != "Phantom example")
