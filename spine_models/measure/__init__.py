"""Clinical measurements on spine films: Cobb angle (AP) and Meyerding slip / disc heights (lateral)."""
from spine_models.measure.cobb import (CENTRELINE_DEGREE, COLUMN_LEVELS, LEVELS, MAX_BODY_STEP_DEG, NOT_IN_CURVES, crooked_bodies, neighbour_steps, decode_levels, Centreline, CobbCurve, centreline_cobb, CobbResult, cobb_angle, cobb_from_endplates, curve_name,
                                       endplate_angles, fold_line, fuse_tilts, level_names, line_angle, line_diff,
                                       tidy_bodies, vertebrae_from_mask)
from spine_models.measure.slip import (MEYERDING_NAMES, disc_heights, infer_anterior, meyerding_grade, slip_from_mask,
                                       slip_grade, slip_levels, slip_percent)
from spine_models.measure.status import (Read, cannot_measure, cobb_read, failed_measurement, measured, public_measurement,
                                         public_result, slip_read)

__all__ = [
    "CENTRELINE_DEGREE", "COLUMN_LEVELS", "MAX_BODY_STEP_DEG", "NOT_IN_CURVES", "crooked_bodies", "neighbour_steps", "decode_levels", "Centreline", "centreline_cobb", "LEVELS", "CobbCurve", "CobbResult", "cobb_angle", "cobb_from_endplates", "curve_name", "endplate_angles", "fuse_tilts",
    "fold_line", "level_names", "line_angle", "line_diff", "tidy_bodies", "vertebrae_from_mask", "MEYERDING_NAMES", "disc_heights", "infer_anterior", "meyerding_grade", "slip_from_mask",
    "slip_grade", "slip_levels", "slip_percent", "Read", "cannot_measure", "cobb_read", "public_measurement", "public_result", "slip_read",
    "failed_measurement", "measured",
]
