"""What a Bento serves with: the package service.py imports, carried inside every Bento.

| module | what it holds |
|---|---|
| ``contract`` | the input contract: the body's ``features``, a row's checks, the 400 messages |
| ``scorer`` | the model: ONNX file checked against its approved sha256, onnxruntime, canary |
| ``endpoint`` | the prediction API as an ASGI app; ``/predict``'s raw fast path |
| ``openapi`` | the OpenAPI document of one version's API, with its exact schema |
| ``metrics`` | requests on ``/metrics`` (BentoML's names), ``/_latency``; the version's identity |
| ``stack`` | which of BentoML's per-request layers wrap the service, and why |
| ``protocol`` | uvicorn's protocol sending each response in one write, with Server-Timing |
| ``recent`` | the rows of recent client requests, bounded, kept for shadow scoring |

It needs only what the Bento's requirements pin (bentos/requirements-serve.txt) and
imports nothing else of the project: a Bento holds service.py and this package, no more.
Importing it changes nothing; service.py installs the protocol and the lean stack explicitly.
"""

from serving.contract import FeatureSchema, InputError
from serving.endpoint import Serving, canary_refusal, prediction_app
from serving.metrics import LATENCY_BUCKETS_S, RequestMetrics, latency_page, publish_identity
from serving.openapi import openapi_document
from serving.protocol import OneWriteHttpProtocol, install_one_write_protocol
from serving.recent import RecentRequests
from serving.scorer import Scorer
from serving.stack import install_lean_stack

__all__ = [
    "LATENCY_BUCKETS_S",
    "FeatureSchema",
    "InputError",
    "OneWriteHttpProtocol",
    "RecentRequests",
    "RequestMetrics",
    "Scorer",
    "Serving",
    "canary_refusal",
    "install_lean_stack",
    "install_one_write_protocol",
    "latency_page",
    "openapi_document",
    "prediction_app",
    "publish_identity",
]
