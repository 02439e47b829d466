"""Train: a form that queues a background training job; live progress, metric curves, logs, cancel, promote."""
from __future__ import annotations

import streamlit as st

from spine_models.errors import SpineInputError
from ui import analysis, render
from ui.models import architectures, job_store
from ui.state import K
from ui.router import ensure_router

ensure_router()


st.title("Train")
store = job_store()
st.caption(f"Jobs run in their own processes (at most {store.max_concurrent} at a time, the rest queue), survive "
           f"an app restart and write to {store.runs_dir}/<job>/.")

task = st.selectbox("Task", ["classify", "detect", "segment"], key=K.TRAIN_TASK)
with st.form("train_form"):
    arch = st.selectbox("Architecture", architectures(task), key=K.TRAIN_ARCH,
                        help="every name is in the model registry (spine_models.models.list_models)")
    data = st.text_input("Data (folder, ZIP, data.yaml or COCO json on this server; several separated by ';')", key=K.TRAIN_DATA)
    c3, c4, c5 = st.columns(3)
    epochs = c3.number_input("Epochs", 1, 1000, 10, key=K.TRAIN_EPOCHS)
    imgsz = c4.number_input("Image size (px)", 32, 2048, 224, step=32, key=K.TRAIN_IMGSZ)
    batch = c5.number_input("Batch", 1, 256, 8, key=K.TRAIN_BATCH)
    c6, c7, c8 = st.columns(3)
    mode = c6.selectbox("Mode", ["finetune", "frozen"], key=K.TRAIN_MODE, help="classify: train everything or the head only")
    init = c7.text_input("Init", "scratch", key=K.TRAIN_INIT, help="scratch | imagenet (local file only) | path to a model.pt")
    nproc = c8.number_input("Processes / GPUs", 1, 64, 1, key=K.TRAIN_NPROC,
                            help="classify / segment networks: train in N processes (DistributedDataParallel through "
                                 "torchrun; one GPU each on CUDA); the batch is split across them")
    extra = st.text_area("More settings (key=value or key: value per line, any key of the task's defaults)", key=K.TRAIN_EXTRA)
    submitted = st.form_submit_button("Start training", type="primary")

if submitted:
    try:
        from spine_models.config import parse_set_args

        cfg = {"task": task, "model": arch, "data": [d.strip() for d in data.split(";") if d.strip()],
               "epochs": int(epochs), "imgsz": int(imgsz), "batch": int(batch),
               # detect runs always start from the architecture's YAML: no init setting to send
               **({"init": init} if init and (task != "detect" or init != "scratch") else {}),
               **({"mode": mode} if task == "classify" else {}),
               **({"nproc": int(nproc)} if int(nproc) > 1 else {}),
               **parse_set_args([ln.strip() if "=" in ln else ln.strip().replace(":", "=", 1)
                                 for ln in extra.splitlines() if ln.strip()])}
        sizes = analysis.split_sizes(cfg)
        small = {k: n for k, n in sizes.items() if k in ("val", "test") and n < analysis.SMALL_PART_PATIENTS}
        if small:
            st.warning("Split too small for a meaningful figure: " + ", ".join(f"{k} {n} patients" for k, n in small.items())
                       + f" (under {analysis.SMALL_PART_PATIENTS}); its validation scores and CIs will be unstable. "
                       "The job runs anyway; add films or change `split` for a figure to report.")
        job_id = store.submit(cfg)
        st.toast(f"Job {job_id} queued: " + " / ".join(f"{k} {n}" for k, n in sizes.items()) + " patients")
    except SpineInputError as exc:
        st.error(str(exc))

st.subheader("Jobs")


@st.fragment(run_every=2.0 if any(j.active for j in store.tick()) else None)
def job_list() -> None:
    """Redrawn every 2 s while a job is queued or running (only this part of the page)."""
    jobs = store.tick()
    if not jobs:
        st.info("No jobs yet.")
    for i, job in enumerate(jobs):
        show_job(job, newest=i == 0)


def show_job(job, newest: bool = False) -> None:
    icon = {"queued": ":material/schedule:", "running": ":material/autorenew:", "done": ":material/check_circle:",
            "failed": ":material/error:", "cancelled": ":material/cancel:"}[job.status]
    # a job that just finished stays open with its curves and card, not collapsed out of sight
    with st.expander(f"{job.id} — {job.status}", expanded=job.active or newest, icon=icon):
        st.code(job.command, language="bash")
        prog = job.progress()
        if job.status == "running" and prog:
            ep, eps = prog.get("epoch") or 0, prog.get("epochs") or 1
            step, steps = prog.get("step") or 0, prog.get("steps") or 0
            frac = min(1.0, ((ep - 1) + (step / steps if steps else 0)) / max(eps, 1)) if ep else 0.0
            loss = prog.get("loss")
            st.progress(frac, text=f"epoch {ep}/{eps} · batch {step}/{steps}" + (f" · loss {loss:.4f}" if loss is not None else ""))
        elif job.status == "queued":
            st.caption("waiting for a free slot")
        fig = render.history_figure(job.history())
        if fig is not None:
            st.plotly_chart(fig, key=f"hist_{job.id}")
        if job.error and job.status != "cancelled":
            st.error(job.error)
        log = job.log_tail(15)
        if log:
            st.text(log)
        if job.active and st.button("Cancel", key=f"cancel_{job.id}"):
            store.cancel(job.id)
            st.rerun()
        if job.status == "done":
            card = store.card_path(job.id)
            if card is not None:
                render.run_card_metrics(card)
            new_id = st.text_input("Model id for weights/", job.id, key=f"{K.PROMOTE_ID}_{job.id}")
            if st.button("Promote to weights/", key=f"promote_{job.id}"):
                try:
                    st.success(f"Promoted: {store.promote(job.id, new_id)}")
                except SpineInputError as exc:
                    st.error(str(exc))


job_list()
