"""The dashboard at /admin in a real browser: it loads without a token and only from the
gateway, an admin token lists a task the test wrote, opening it shows its sessions, an
entry appended while the page is open shows up in the live tail, and the export button
downloads a gzip whose lines are the transcript. Swagger UI at /docs renders with no
network either."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway

PROJECT = "-workspace-browser"
WAIT_MS = 15_000
ADMIN_SCOPES = "admin,transcripts:read"


def _append(gateway: Gateway, task: str, session: str, entries: list[dict[str, Any]]) -> None:
    token = gateway.token(task, "transcripts:write")
    resp = httpx.post(
        f"{gateway.url}/v1/tasks/{task}/projects/{PROJECT}/sessions/{session}/entries",
        json={"entries": entries},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    assert resp.status_code == 200, resp.text


def _entry(text: str) -> dict[str, Any]:
    return {"type": "user", "uuid": str(uuid.uuid4()), "message": {"role": "user", "content": text}}


@pytest.fixture
def written(gateway: Gateway) -> tuple[str, str, list[dict[str, Any]]]:
    """A fresh task with one session of two entries."""
    task = "t-browser-" + uuid.uuid4().hex[:12]
    session = str(uuid.uuid4())
    entries = [_entry("first"), _entry("second")]
    _append(gateway, task, session, entries)
    return task, session, entries


@pytest.fixture
def page(browser: Any, gateway: Gateway) -> Iterator[Any]:
    """A fresh page (its own sessionStorage) that records every request it makes and
    every script error, and checks at the end that all of them went to the gateway."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
        outside = [
            u for u in requests if not (u.startswith(gateway.url) or u.startswith(("blob:", "data:")))
        ]
        assert not outside, f"the page reached beyond the gateway: {outside}"
        assert not errors, f"script errors: {errors}"
    finally:
        context.close()


def _open_with_token(page: Any, gateway: Gateway, suffix: str = "") -> None:
    resp = page.goto(f"{gateway.url}/admin{suffix}", wait_until="load")
    assert resp is not None and resp.status == 200
    page.fill("#token", gateway.token("*", ADMIN_SCOPES))
    page.click("#token-use")
    page.wait_for_function(
        "() => sessionStorage.length === 1", timeout=WAIT_MS
    )


def test_the_page_loads_without_a_token_and_only_from_the_gateway(gateway: Gateway, page: Any) -> None:
    resp = page.goto(f"{gateway.url}/admin", wait_until="load")
    assert resp is not None and resp.status == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert page.title() == "transcript-gateway dashboard"
    state = page.locator("[data-testid=token-state]")
    assert "No token" in state.inner_text(timeout=WAIT_MS)
    # The vendored Durable Streams client loaded as a module with the page's script.
    page.wait_for_function(
        "() => document.getElementById('token-form') !== null", timeout=WAIT_MS
    )
    assert page.evaluate("() => sessionStorage.length") == 0
    # The token is kept in this tab only, and forgotten on request.
    page.fill("#token", "not-a-real-token")
    page.click("#token-use")
    page.wait_for_function("() => sessionStorage.length === 1", timeout=WAIT_MS)
    assert page.evaluate("() => localStorage.length") == 0
    page.click("#token-forget")
    page.wait_for_function("() => sessionStorage.length === 0", timeout=WAIT_MS)


def test_an_admin_token_lists_the_task_and_opening_it_shows_its_sessions(
    gateway: Gateway, page: Any, written: tuple[str, str, list[dict[str, Any]]]
) -> None:
    task, session, _ = written
    _open_with_token(page, gateway)
    row = page.locator(f'#tasks tr[data-task-id="{task}"]')
    row.wait_for(state="visible", timeout=WAIT_MS)
    row.click()
    page.locator("[data-testid=task-title]").filter(has_text=task).wait_for(timeout=WAIT_MS)
    page.locator(f'#transcripts tr[data-session-id="{session}"]').wait_for(
        state="visible", timeout=WAIT_MS
    )


def test_an_entry_appended_while_the_page_is_open_shows_in_the_live_tail(
    gateway: Gateway, page: Any, written: tuple[str, str, list[dict[str, Any]]]
) -> None:
    task, session, entries = written
    _open_with_token(page, gateway, f"#task={task}")
    page.locator(f'#transcripts tr[data-session-id="{session}"] button').click(timeout=WAIT_MS)
    tail = page.locator("#tail-entries li")
    for e in entries:
        page.locator(f'#tail-entries li[data-uuid="{e["uuid"]}"]').wait_for(timeout=WAIT_MS)
    later = _entry("appended while the page is open")
    _append(gateway, task, session, [later])
    page.locator(f'#tail-entries li[data-uuid="{later["uuid"]}"]').wait_for(timeout=WAIT_MS)
    assert tail.count() == len(entries) + 1


def test_the_export_button_downloads_a_gzip_of_the_transcript(
    gateway: Gateway, page: Any, written: tuple[str, str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    task, session, entries = written
    _open_with_token(page, gateway, f"#task={task}")
    with page.expect_download(timeout=WAIT_MS) as download_info:
        page.click("[data-testid=export]")
    download = download_info.value
    assert download.suggested_filename == f"{task}.jsonl.gz"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    lines = [json.loads(line) for line in gzip.decompress(saved.read_bytes()).splitlines()]
    assert [line["entry"] for line in lines] == entries
    assert all(
        line["key"] == {"project_key": PROJECT, "session_id": session} for line in lines
    ), lines


def test_swagger_ui_renders_the_api_from_the_gateway_alone(gateway: Gateway, page: Any) -> None:
    resp = page.goto(f"{gateway.url}/docs/", wait_until="load")
    assert resp is not None and resp.status == 200
    page.locator(".opblock-tag").first.wait_for(timeout=WAIT_MS)
    page.locator("button.authorize").wait_for(timeout=WAIT_MS)
    assert page.locator(".opblock").count() >= 19
