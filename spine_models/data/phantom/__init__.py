"""Synthetic spine phantom with exact ground truth (``spine-models synth``).

- ``xray.py``: one patient = a chain of T1..L5 + S1 bodies; AP and lateral films rendered from it,
  with Cobb angle and slip measured from the drawn corners.
- ``writer.py``: the SPEC synth layout (images/, masks/<structure>/, labels.csv, landmarks.csv,
  yolo/, coco.json, MANIFEST.json), deterministic; ``write_png``/``write_manifest`` are shared.
- ``mri.py``: lumbar MRI DICOM studies (T2 SAG, T2 AX, MYELO) with disc truth.

The same ``--seed`` and ``--n`` in ``xray-ap`` and ``xray-lat`` runs give the same patients
(``patient_id`` ``P<seed>-<index>``), so AP + lateral pairs can be assembled by patient_id.
"""
from spine_models.data.phantom.writer import GENERATOR_VERSION, generate_xray

__all__ = ["GENERATOR_VERSION", "generate_xray"]
