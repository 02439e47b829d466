"""Synthetic spine phantom with exact ground truth (``spine-models synth``).

- ``xray.py``: one patient = a chain of T1..L5 + S1 bodies; AP and lateral films rendered from it,
  with Cobb angle and slip *measured* from the drawn corners (``cobb_from_corners``,
  ``slip_from_corners``, ``meyerding_grade``). Lateral films are labelled from what a lateral film
  shows (``spondylolisthesis`` when slipped, else ``normal``); AP films from the Cobb angle.
- ``render.py``: the radiograph layers (soft tissue, lungs, heart, bowel gas, cortical/trabecular
  bone, ribs, clavicles, pelvis, metal) and film formation (heel effect, blur, quantum noise, DR
  processing, window/gamma), vectorised numpy/OpenCV.
- ``writer.py``: the SPEC synth layout (images/, masks/<structure>/, labels.csv, landmarks.csv,
  yolo/, coco.json, MANIFEST.json), deterministic whatever the worker count. Shared utilities for
  every generator (the MRI phantom uses them):
  ``write_png(path, array)`` — uint8/uint16 PNG with fixed encoder settings (bytes depend on pixels only);
  ``write_manifest(out_dir, meta) -> dict`` — MANIFEST.json = ``meta`` (generator, generator_version,
  kind, arguments, seed, counts per class, ...) + ``files``: sha256 of every other file, sorted.
- ``mri.py``: lumbar MRI DICOM studies (T2 SAG, T2 AX, MYELO) with disc truth (``generate_mri``).

Two-view pairs: the same ``--seed`` and ``--n`` (and ``--implant-fraction``) in ``xray-ap`` and
``xray-lat`` runs give the same patients (``patient_id`` ``P<seed>-<index>``); join the two
``labels.csv`` files on ``patient_id``. YOLO class ids are 0 lumbar_implant, 1 scoliosis, 2 vertebra;
COCO category ids 1, 2, 3 keep the implant/scoliosis study's map (1 Lum, 2 sco).
"""
from spine_models.data.phantom.writer import GENERATOR_VERSION, generate_xray, write_manifest, write_png

__all__ = ["GENERATOR_VERSION", "generate_xray", "write_manifest", "write_png"]
