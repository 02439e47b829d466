"""Reports: the SPEC evaluation report (``report.evaluation``) and the clinician page (``report.clinician``)."""
__all__: list[str] = []
