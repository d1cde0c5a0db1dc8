"""The load clients' HTTP framing: requests they send, responses they split."""

from __future__ import annotations

import pytest

from bench.wire import predict_request, split_response


def test_a_request_carries_its_body_and_length() -> None:
    request = predict_request("/predict", b'{"features":[1]}')
    head, body = request.split(b"\r\n\r\n")
    assert head.startswith(b"POST /predict HTTP/1.1\r\n")
    assert b"Content-Length: 16" in head
    assert body == b'{"features":[1]}'


def test_responses_are_split_only_once_complete() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\ncontent-type: x\r\n\r\nbody"
    assert split_response(response[:20]) is None
    assert split_response(response[:-1]) is None
    assert split_response(response) == (200, len(response))
    # Pipelined bytes after the first response are left for the next one.
    assert split_response(response + b"HTTP/1.1 4") == (200, len(response))


def test_the_header_name_is_case_insensitive_and_the_status_is_read() -> None:
    response = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"
    assert split_response(response) == (413, len(response))


def test_a_response_without_a_length_is_refused() -> None:
    with pytest.raises(ValueError, match="content-length"):
        split_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
