"""The OpenAPI 3 document of one version's prediction API, with its exact schema: the
feature names, their count and range, and the batch limit this Bento was built with.

Written out, not generated: the endpoints are raw ASGI (serving.endpoint), which no framework
describes, and a client generator or a fuzzer (schemathesis) should see the real contract.
"""

from __future__ import annotations

from typing import Any

from serving.contract import FLOAT32_MAX
from serving.scorer import Scorer


def openapi_document(scorer: Scorer, max_batch_rows: int) -> dict[str, Any]:
    """The OpenAPI 3 description of this version's prediction API (its exact schema)."""
    n = len(scorer.feature_names)
    number = {"type": "number"}
    # What the model takes: a float32 (the service refuses larger magnitudes).
    feature = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    row = {
        "oneOf": [
            {"type": "array", "items": feature, "minItems": n, "maxItems": n},
            {
                "type": "object",
                "properties": {name: feature for name in scorer.feature_names},
                "required": scorer.feature_names,
                "additionalProperties": False,
            },
        ]
    }
    error = {
        "description": "What is wrong: the request (400, 413), or this Bento, which failed "
        "its canary check at start-up and predicts nothing (503)",
        "content": _json_body(
            {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        ),
    }
    identity = {"model": {"type": "string"}, "model_version": {"type": "string"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{scorer.name} model", "version": scorer.version},
        "paths": {
            "/predict": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": _json_body(
                            {
                                "type": "object",
                                "properties": {"features": row},
                                "required": ["features"],
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "The score",
                            "content": _json_body(
                                {
                                    "type": "object",
                                    "properties": {
                                        "score": number,
                                        "label": {"type": "integer"},
                                        **identity,
                                    },
                                    "required": ["score", "label", "model", "model_version"],
                                }
                            ),
                        },
                        "400": error,
                        "413": error,
                        "503": error,
                    },
                }
            },
            "/predict_batch": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": _json_body(
                            {
                                "type": "object",
                                "properties": {
                                    "features": {
                                        "type": "array",
                                        "items": row,
                                        "minItems": 1,
                                        "maxItems": max_batch_rows,
                                    }
                                },
                                "required": ["features"],
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "The scores",
                            "content": _json_body(
                                {
                                    "type": "object",
                                    "properties": {
                                        "scores": {"type": "array", "items": number},
                                        "labels": {"type": "array", "items": {"type": "integer"}},
                                        **identity,
                                    },
                                    "required": ["scores", "labels", "model", "model_version"],
                                }
                            ),
                        },
                        "400": error,
                        "413": error,
                        "503": error,
                    },
                }
            },
            "/model": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "Name, version, sha256, features, threshold",
                            "content": _json_body({"type": "object"}),
                        }
                    }
                }
            },
        },
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
