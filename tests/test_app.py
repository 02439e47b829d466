"""AppTest (streamlit.testing.v1) for every page: upload, run, results render; bad uploads show one-line errors.

Models are tiny random-weight cards written into a temp weights folder (SPINE_MODELS_WEIGHTS); runs go to a
temp runs folder (SPINE_MODELS_RUNS). Nothing here trains except the Train page test.
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from app_fixtures import dicom_bytes, film, make_weights, new_app, png_bytes, point_app_at, sections  # noqa: E402

from streamlit.testing.v1 import AppTest  # noqa: E402



@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def app_env(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return point_app_at(weights, tmp_path, monkeypatch)


def models_to_run(at: AppTest):
    """The "Models to run" multiselect (its key is per film)."""
    return next(m for m in at.multiselect if m.label == "Models to run")


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [s.value for s in at.subheader] + [s.value for s in at.success]
    parts += [c.value for c in at.caption] + [i.value for i in at.info] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


# ------------------------------------------------------------------------------------ Analyse X-ray
def test_analyse_png_runs_every_fitting_model(app_env: Path) -> None:
    at = new_app()
    at.file_uploader(key="xray_upload").upload("film.png", png_bytes(film()), "image/png").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"tiny-cls · classify", "tiny-det · detect", "tiny-seg · segment"} <= set(sections(at))
    assert "Findings" in [s.value for s in at.subheader]
    lines = "\n".join(m.value for m in at.markdown)  # one line per finding, each naming the model it comes from
    assert "Scoliosis:" in lines and "Spondylolisthesis:" in lines and "from `tiny-" in lines
    assert "calls the class with the largest probability" in texts(at)  # the decision rule beside the bars
    assert any("Prediction:" in m.value for m in at.markdown)
    assert at.get("plotly_chart"), "class probability chart missing"
    assert {"vertebra", "spinous_process", "pedicle"} <= {c.label for c in at.checkbox}
    assert "model(s) ran in" in at.success[0].value and "cpu" in at.success[0].value
    labels = [b.label for b in at.get("download_button")]
    assert {"Results JSON", "Results CSV", "Clinician report (HTML)"} <= set(labels)
    # per-structure toggle: switching one off reruns without recomputing or failing
    at.checkbox(key="seg_tiny-seg_pedicle").uncheck().run()
    assert not at.exception


@pytest.mark.slow
def test_analyse_shap_on_demand_and_pdf_report(app_env: Path) -> None:
    at = new_app()
    at.file_uploader(key="xray_upload").upload("film.png", png_bytes(film()), "image/png").run()
    at.button(key="xray_shap_tiny-cls").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "xray_shap_tiny-cls" not in [b.key for b in at.button], "SHAP map should replace its button"
    assert "Clinician report (PDF)" in [b.label for b in at.get("download_button")]  # built when clicked


def test_analyse_dicom_shows_deidentified_header_and_window(app_env: Path) -> None:
    at = new_app()
    at.file_uploader(key="xray_upload").upload("film.dcm", dicom_bytes(film()), "application/dicom").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {s.label for s in at.slider} >= {"Level (centre)", "Window (width)"}
    header = str([j.value for j in at.json])
    assert "DICOM" in header and "Doe" not in header and "Jane" not in header
    at.slider(key="xray_window_width").set_value(0.5).run()
    assert not at.exception and "tiny-seg · segment" in sections(at)


def test_analyse_bad_upload_shows_error_and_session_continues(app_env: Path) -> None:
    at = new_app()
    at.file_uploader(key="xray_upload").upload("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png").run()
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert "broken.png" not in at.error[0].value and "file-" in at.error[0].value  # neutral id, never the name
    at.file_uploader(key="xray_upload").upload("film.png", png_bytes(film(seed=3)), "image/png").run()
    assert not at.error and "tiny-cls · classify" in sections(at)


def test_analyse_without_models_says_so(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINE_MODELS_WEIGHTS", str(app_env / "empty"))
    at = new_app()
    assert any("no shipped models yet" in w.value for w in at.warning)
    at.file_uploader(key="xray_upload").upload("film.png", png_bytes(film()), "image/png").run()
    assert not at.exception and any("Train page" in w.value for w in at.warning)


def test_analyse_phantom_example(app_env: Path) -> None:
    """Examples come from `spine-models synth`; when the generator is missing the page says so plainly."""
    at = new_app()
    at.radio(key="xray_source").set_value("Phantom example").run()
    assert not at.exception
    if at.error:
        assert "phantom generator" in at.error[0].value
    else:
        assert "tiny-cls · classify" in sections(at)


# ---------------------------------------------------------------------------------------- MRI study
def _study_zip(extra: dict[str, bytes] | None = None) -> bytes:
    from spine_models.io import make_dicom

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for desc, n, number in (("T2 SAG", 3, 1), ("T2 AX", 5, 2)):
            for i in range(n):
                px = (np.random.default_rng(i).random((64, 64)) * 4000).astype(np.uint16)
                p = Path(f"/tmp/_mri_{desc.replace(' ', '')}_{i}.dcm")
                make_dicom(px, p, modality="MR", series_description=desc, series_number=number, instance_number=i + 1,
                           series_uid=f"1.2.3.{number}", study_uid="1.2.3", patient_name="Doe^John",
                           image_position=[0, 0, float(i) * 4], image_orientation=[1, 0, 0, 0, 1, 0] if number == 2 else [0, 1, 0, 0, 0, -1])
                zf.write(p, f"study/{desc}/{i}.dcm")
                p.unlink()
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buf.getvalue()


def test_mri_study_zip_lists_series(app_env: Path) -> None:
    at = new_app("pages/mri.py")
    at.file_uploader(key="mri_upload").upload("study.zip", _study_zip(), "application/zip").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert sorted(table["description"]) == ["T2 AX", "T2 SAG"] and sorted(table["frames"]) == [3, 5]
    assert "Doe" not in table.to_string()
    assert "Frame selection per disc level" in [s.value for s in at.subheader]


def test_mri_phantom_folder_selection_roi_and_disc_states(app_env: Path) -> None:
    from spine_models.data.phantom.mri import generate_mri

    root = app_env / "mri"
    generate_mri(root, 1, 0, quiet=True)
    at = new_app("pages/mri.py")
    at.radio(key="mri_example").set_value("Folder path").run()
    at.text_input(key="mri_folder").input(str(root / "SYN-MRI-0001")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    sel = at.dataframe[1].value
    # the study's rule: disc x = 1 (L5-S1) .. 5 (L1-L2) on axial frame 3x + 2(x-1)
    assert list(sel["level"]) == ["mid-sagittal", "L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"]
    assert list(sel["frame"]) == [8, 3, 8, 13, 18, 23] and sel["why"].str.len().min() > 10
    assert not any("No axial frame" in i.value for i in at.info)
    discs = at.dataframe[2].value
    assert list(discs["level"]) == ["L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"]
    assert discs["tiny-disc"].str.contains("grade").all()
    assert (discs["provenance"] == "tiny-disc: phantom-trained").all()  # every row says where its grade holds


def test_mri_study_with_a_bad_file_says_it_was_left_out(app_env: Path) -> None:
    bad = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff garbage"  # a DICOM preamble, then a broken header
    at = new_app("pages/mri.py")
    at.file_uploader(key="mri_upload").upload("study.zip", _study_zip({"study/T2 SAG/PID-77341_07.dcm": bad}),
                                              "application/zip").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert sorted(at.dataframe[0].value["frames"]) == [3, 5]  # the good series are all there
    notes = [w.value for w in at.warning if "left out of this study" in w.value]
    assert len(notes) == 1 and notes[0].startswith("1 file(s)") and "77341" not in notes[0], [w.value for w in at.warning]


def test_mri_bad_zip_shows_error(app_env: Path) -> None:
    at = new_app("pages/mri.py")
    at.file_uploader(key="mri_upload").upload("study.zip", b"PK\x03\x04 truncated", "application/zip").run()
    assert not at.exception and len(at.error) == 1 and "study.zip" not in at.error[0].value  # neutral id


# ---------------------------------------------------------------------------------------- Compare
def test_compare_two_models_on_a_folder(app_env: Path, weights: Path) -> None:
    import shutil

    from PIL import Image

    # a second classifier: same file, another id (its own card)
    for ext in ("pt", "json"):
        shutil.copy(weights / f"tiny-cls.{ext}", app_env / f"tiny-cls-b.{ext}")
    wdir = app_env / "w2"
    wdir.mkdir()
    for f in weights.glob("*"):
        shutil.copy(f, wdir / f.name)
    import json

    card = json.loads((weights / "tiny-cls.json").read_text())
    card["id"] = "tiny-cls-b"
    card["data"] = {"split": {"seed": 0, "ratios": [0.5, 0.0, 0.5], "method": "hash", "stratify": False, "source": "data"}}
    (wdir / "tiny-cls-b.json").write_text(json.dumps(card))
    data = app_env / "data"
    rng = np.random.default_rng(0)
    for c in ("normal", "scoliosis", "spondylolisthesis"):
        (data / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((rng.random((64, 48)) * 255).astype(np.uint8)).save(data / c / f"{c}_{i}.png")

    import os

    os.environ["SPINE_MODELS_WEIGHTS"] = str(wdir)  # monkeypatch restores it (app_env set it)
    at = new_app("pages/compare.py")
    at.selectbox[0].set_value("classify").run()
    assert set(at.multiselect(key="cmp_models").value) == {"tiny-cls", "tiny-cls-b"}  # same classes, not the MRI model
    at.multiselect(key="cmp_models").set_value(["tiny-cls", "tiny-cls-b"]).run()
    at.radio(key="cmp_source").set_value("Folder path").run()
    at.text_input(key="cmp_folder").input(str(data)).run()
    # tiny-cls-b's card says it was trained on this folder: the page says how many films it saw
    assert any("`tiny-cls-b` was trained and validated on this data" in w.value for w in at.warning)
    at.checkbox(key="cmp_held_out").uncheck().run()
    at.select_slider(key="cmp_resamples").set_value(200).run()
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Only 12 patients" in w.value for w in at.warning)  # small-n caveat on the CIs
    assert "Measures CSV" in [b.label for b in at.get("download_button")]
    assert len(at.get("plotly_chart")) >= 3  # two confusion matrices + ROC
    measures = at.dataframe[0].value
    assert list(measures.columns) == ["tiny-cls", "tiny-cls-b"] and "scoliosis · sensitivity" in measures.index
    # identical models never disagree: McNemar p = 1, empty gallery
    assert any("p = 1" in m.value for m in at.markdown)
    assert "Where the models disagree (0 images)" in [s.value for s in at.subheader]
    at.checkbox(key="cmp_held_out").check().run()  # held-out films only: each model scored on its own test part
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("held-out part only" in c.value for c in at.caption)


# ---------------------------------------------------------------------------------------- Models
def test_models_page_shows_cards(app_env: Path) -> None:
    at = new_app("pages/models.py")
    assert [e.label.split(" — ")[0] for e in at.expander] == ["tiny-cls", "tiny-det", "tiny-disc", "tiny-seg"]
    assert "Research use only" in texts(at) and "random weights" in texts(at)


def test_infer_view_sets_a_sure_view_and_leaves_tagged_or_unsure_films(monkeypatch: pytest.MonkeyPatch) -> None:
    """A view model (classes ap, lat) names the view of an untagged X-ray when sure, so AP-only models skip
    lateral films; a DICOM's own view, an MR image, an unsure answer or no view model change nothing."""
    from types import SimpleNamespace

    import ui.models
    from spine_models.io.radiograph import Radiograph
    from ui import analysis

    gate = SimpleNamespace(id="view_gate", task="classify", classes=["ap", "lat"])
    other = SimpleNamespace(id="cls", task="classify", classes=["normal", "scoliosis"])
    answer = {"p": [0.02, 0.98]}
    monkeypatch.setattr(ui.models, "get_predictor", lambda card: SimpleNamespace(predict_proba=lambda ims: np.array([answer["p"]])))
    rad = Radiograph(pixels=np.zeros((64, 32), np.float32), bits=16, format="PNG", name="film.png", photometric="MONOCHROME2")
    got, note = analysis.infer_view(rad, [other, gate])
    assert got.view == "lat" and rad.view is None and "LAT by view_gate (98.0%)" in note
    answer["p"] = [0.6, 0.4]
    got, note = analysis.infer_view(rad, [gate])
    assert got.view is None and "unsure" in note
    assert analysis.infer_view(rad, [other]) == (rad, "")
    tagged = Radiograph(pixels=rad.pixels, bits=16, format="DICOM", name="x.dcm", photometric="MONOCHROME2", view="ap")
    assert analysis.infer_view(tagged, [gate])[0].view == "ap"


def test_real_upload_runs_real_validated_models_by_default(weights: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """On an uploaded film only the real-validated model runs by default; adding a phantom-only model shows
    it under the phantom-trained label; a phantom example still runs every fitting model."""
    import json
    import shutil

    real = tmp_path / "weights_real"
    shutil.copytree(weights, real)
    card = json.loads((real / "tiny-seg.json").read_text())
    card["validated_on"] = [{"data": "aasce-ap", "real": True,
                             "metrics": {"cobb_mae_deg": {"value": 9.0, "ci95": [7.0, 11.0]}}}]
    (real / "tiny-seg.json").write_text(json.dumps(card))
    point_app_at(real, tmp_path, monkeypatch)
    at = new_app()
    at.file_uploader(key="xray_upload").upload("film.png", png_bytes(film()), "image/png").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert sections(at) == ["tiny-seg · segment"]
    assert "validated on real films by default" in texts(at)
    assert "validated on real films: aasce-ap" in texts(at)
    ms = models_to_run(at)
    ms.select("tiny-cls").run()
    assert not at.exception
    assert "tiny-cls · classify" in sections(at)
    assert "phantom-trained — not validated on real films" in "\n".join(w.value for w in at.warning)


def test_disagreement_gallery_names_images_neutrally() -> None:
    """Compare's gallery and table show a neutral image name, never the dataset's own file stem (often a patient)."""
    from ui.analysis import disagreements

    reps = {"a": {"predictions": [{"id": "Doe_Jane_1979", "pred": "normal", "truth": "scoliosis"}]},
            "b": {"predictions": [{"id": "Doe_Jane_1979", "pred": "scoliosis", "truth": "scoliosis"}]}}
    (row,) = disagreements(reps)
    assert row["image"].startswith("image-") and "Doe" not in row["image"]
    assert row["a"] == "normal" and row["b"] == "scoliosis"


def test_roc_legend_does_not_contradict_an_undefined_macro_auc() -> None:
    """A class without images leaves the report's macro AUC undefined ("—" in the table); the ROC legend says the
    curve covers only the classes with images instead of quoting a bare AUC beside it."""
    from ui.analysis import roc_curves

    preds = [{"truth": t, "probs": {"normal": p, "scoliosis": 1 - p, "spondylolisthesis": 0.0}}
             for t, p in (("normal", 0.9), ("normal", 0.7), ("scoliosis", 0.2), ("scoliosis", 0.4))]
    rep = {"data": {"classes": ["normal", "scoliosis", "spondylolisthesis"]}, "predictions": preds,
           "metrics": {"auc_macro": {"value": None, "ci95": [None, None]}}}
    ok = {**rep, "metrics": {"auc_macro": {"value": 1.0, "ci95": [1.0, 1.0]}}}
    assert list(roc_curves({"a": rep, "b": ok})) == ["a — classes with images only", "b"]
