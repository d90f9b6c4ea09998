"""Requests carry the caller's OpenTelemetry trace context, so an agent's trace
continues through the gateway."""

from __future__ import annotations

import httpx
import pytest

from transcript_gateway import GatewaySessionStore

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")

KEY = {"project_key": "-workspace-t1", "session_id": "s1"}


def _recording() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"entries": []}})

    return httpx.MockTransport(handler), seen


async def test_a_request_inside_a_span_carries_its_traceparent() -> None:
    transport, seen = _recording()
    tracer = sdk_trace.TracerProvider().get_tracer("agent")
    with tracer.start_as_current_span("agent turn") as span:
        async with GatewaySessionStore("http://gateway.test", "t1", transport=transport) as store:
            await store.load(KEY)
    context = span.get_span_context()
    assert seen, "no request was sent"
    assert seen[0].headers["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )


async def test_a_request_outside_any_span_carries_none() -> None:
    transport, seen = _recording()
    async with GatewaySessionStore("http://gateway.test", "t1", transport=transport) as store:
        await store.load(KEY)
    assert seen, "no request was sent"
    assert "traceparent" not in seen[0].headers
