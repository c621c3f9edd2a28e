"""Model monitoring: captured requests against the training data (``drift``), and its HTML page
(``drift_report``). Importing this package imports neither pandas nor scipy: they load on first use."""

from sluice.monitoring.drift import DriftThresholds, compare, prediction_reference, psi
from sluice.monitoring.drift_report import render_drift_report

__all__ = ["DriftThresholds", "compare", "prediction_reference", "psi", "render_drift_report"]
