"""The input contract of a prediction: what a request body must hold, and the 400 messages
that name what it does not.

A row is a list of numbers in schema order or an object of ``name: number``; every value an
int or a float (not a boolean), finite and within float32's range, the model's input type.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import orjson

FLOAT32_MAX = float(np.finfo(np.float32).max)
# A row whose squared norm is within this bound has every value within float32's range
# (x_i^2 <= sum of squares; float64 holds any such sum).
_SQUARED_NORM_BOUND = FLOAT32_MAX * FLOAT32_MAX
_NUMBER_TYPES = (int, float)
_NUMBERS = frozenset(_NUMBER_TYPES)
_NON_FINITE = re.compile(rb"NaN|Infinity|\d[eE]\+?\d{3,}")


class InputError(ValueError):
    """A request the model cannot score; the message names the field and the problem."""


def parse_features(body: bytes) -> Any:
    """The ``features`` field of a JSON request body; InputError if the body has none."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = " (NaN and Infinity are not numbers in JSON)" if _NON_FINITE.search(body) else ""
        raise InputError(f"malformed JSON: {exc}{hint}") from None
    if not isinstance(document, dict) or "features" not in document:
        raise InputError('body must be a JSON object with a "features" field')
    return document["features"]


class FeatureSchema:
    """The model's feature names, in order: turns request features into checked rows."""

    def __init__(self, feature_names: list[str]) -> None:
        self.feature_names = feature_names
        self._index = {feature: i for i, feature in enumerate(feature_names)}

    def row(self, features: Any, where: str = "features") -> np.ndarray:
        """One row in schema order, as float64, from a list or a name→value mapping;
        InputError if bad."""
        if isinstance(features, list):
            if len(features) != len(self.feature_names):
                raise InputError(
                    f"{where}: expected {len(self.feature_names)} features, got {len(features)}"
                )
            values = features
        elif isinstance(features, dict):
            values = self._ordered(features, where)
        else:
            raise InputError(f"{where}: expected a list or an object of feature values")
        # Fast path, C loops only: every value an int or float (not bool: type() is exact),
        # converted once; a squared norm within the bound puts every value within float32's
        # finite range (a NaN or an infinity fails the comparison). A row it turns away may
        # still be good (large values whose squares add up past the bound): the slow path
        # decides.
        if _NUMBERS.issuperset(map(type, values)):
            row = np.array(values, dtype=np.float64)
            if row.dot(row) <= _SQUARED_NORM_BOUND:
                return row
        # Slow path: find the first bad value and name it.
        for i, value in enumerate(values):
            if type(value) not in _NUMBER_TYPES:
                raise InputError(
                    f"{where}: {self._label(i)} must be a number, got {_json_type(value)}"
                )
            if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
                raise InputError(
                    f"{where}: {self._label(i)} must be a finite number within float32 range "
                    f"(|x| <= {FLOAT32_MAX:.7g})"
                )
        return np.array(values, dtype=np.float64)

    def rows(self, features: Any, max_rows: int) -> list[np.ndarray]:
        """A batch: a non-empty list of at most ``max_rows`` rows (see :meth:`row`), each
        named by its index in a message; InputError if bad."""
        if not isinstance(features, list) or not features:
            raise InputError("features: expected a non-empty list of rows")
        if len(features) > max_rows:
            raise InputError(f"features: at most {max_rows} rows, got {len(features)}")
        return [self.row(item, f"features[{i}]") for i, item in enumerate(features)]

    def _ordered(self, features: dict[str, Any], where: str) -> list[Any]:
        unknown = [name for name in features if name not in self._index]
        if unknown:
            raise InputError(f"{where}: unknown feature(s): {', '.join(sorted(unknown)[:10])}")
        if len(features) != len(self.feature_names):
            missing = [name for name in self.feature_names if name not in features]
            raise InputError(f"{where}: missing feature(s): {', '.join(missing[:10])}")
        return [features[name] for name in self.feature_names]

    def _label(self, i: int) -> str:
        return f"feature {i} ({self.feature_names[i]})"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )
