"""Metrics with bootstrap CIs. Import the submodule you need (kept lazy so importing is cheap):

- ``metrics.bootstrap``: ``M``, ``bootstrap_ci``, ``resample_indices``, ``percentile_ci``
- ``metrics.classification``: ``classification_metrics``, ``per_class_measures``, ``ClassificationAccumulator``
- ``metrics.paired``: McNemar (``mcnemar``, ``mcnemar_test``)
- ``metrics.audit``: the metadata shortcut audit (``metadata_features``, ``shortcut_audit``)
- ``metrics.detection`` / ``metrics.segmentation``: per-task metrics of those engines
"""
__all__: list[str] = []
