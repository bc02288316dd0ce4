"""Dataset calibration: pick the quadtree threshold for a whole dataset and a compute budget.

One pass computes every image's exact tokens-vs-threshold curve (``records``), spilled to disk
(``store``); the curves merge into the dataset's exact curve and the threshold that meets a
target is solved without re-running the patcher (``curve``). Sources (``sources``): a folder, a
glob, a list of paths, a zip or a Parquet file; engines (``engines``): a local process pool or
Ray Data. Results: ``report.json``/``report.md`` and ``layouts.parquet`` (``arrow``).

    from adapatch.dataset import calibrate, Targets
    with calibrate("photos/", Targets(mean_tokens=120), out="calib/") as cal:
        print(cal.threshold, cal.stats.p95_tokens)
"""

from .arrow import layouts_from_arrow, layouts_to_arrow, read_layouts, write_layouts
from .calibrate import DEFAULT_TARGETS, Calibration, Targets, calibrate, layouts_at, scan, solve
from .curve import (
                    OBJECTIVES,
                    DatasetCurve,
                    DatasetStats,
                    InfeasibleTarget,
                    Objectives,
                    dataset_curve,
                    extremes,
                    solve_threshold,
)
from .engines import ENGINES
from .records import CALIBRATION_IMPORTANCE, CurveSettings
from .sources import Source, SourceError, open_source
from .store import CurveStore

__all__ = [
                    "CALIBRATION_IMPORTANCE",
                    "DEFAULT_TARGETS",
                    "ENGINES",
                    "OBJECTIVES",
                    "Calibration",
                    "CurveSettings",
                    "CurveStore",
                    "DatasetCurve",
                    "DatasetStats",
                    "InfeasibleTarget",
                    "Objectives",
                    "Source",
                    "SourceError",
                    "Targets",
                    "calibrate",
                    "dataset_curve",
                    "extremes",
                    "layouts_at",
                    "layouts_from_arrow",
                    "layouts_to_arrow",
                    "open_source",
                    "read_layouts",
                    "scan",
                    "solve",
                    "solve_threshold",
                    "write_layouts",
]
