"""The vocabularies shared by specs and contracts: feature kinds and model tasks.

Kept apart from ``sluice.specs`` so that what only reads contracts (the prediction API) does not
import the spec models and their YAML loader.
"""

from __future__ import annotations

from typing import Literal

FeatureKind = Literal["text", "categorical", "numeric", "date"]
Task = Literal["classification", "regression", "anomaly", "forecast"]
