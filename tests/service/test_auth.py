"""Token auth on every protected route, the cookie login flow, CSRF guard, and XSS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tickwork import Scheduler, Task, every
from tickwork.service.api import create_app
from tickwork.service.auth import COOKIE_NAME, safe_next, session_value

from .conftest import OK_HANDLER, TOKEN

PROTECTED = [
    ("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/api/tasks/alpha"),
    ("PATCH", "/api/tasks/alpha"), ("DELETE", "/api/tasks/alpha"),
    ("POST", "/api/tasks/alpha/enable"), ("POST", "/api/tasks/alpha/disable"),
    ("POST", "/api/tasks/alpha/run"), ("GET", "/api/tasks/alpha/history"),
    ("GET", "/api/runs"), ("GET", "/api/stats"), ("GET", "/api/events"),
    ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("POST", "/ui/tasks/alpha/disable"), ("POST", "/ui/tasks/alpha/run"),
]
PAGES = ["/", "/tasks/alpha"]


@pytest.fixture
def tapp(sched: Scheduler) -> FastAPI:
    return create_app(sched, token=TOKEN)


@pytest.fixture
def anon(tapp: FastAPI) -> Iterator[TestClient]:
    with TestClient(tapp, follow_redirects=False) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Bearer " + TOKEN + "x",
                                  "Basic " + TOKEN, TOKEN])
def test_protected_routes_401_without_right_token(anon: TestClient, sched: Scheduler,
                                                  method: str, path: str,
                                                  auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = anon.request(method, path, headers=headers, json={} if method != "GET" else None)
    assert r.status_code == 401, (method, path, r.status_code)
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    # Nothing changed.
    assert sched.get_task("alpha").enabled is True
    assert sched.get_history() == []


@pytest.mark.parametrize(("method", "path"), [p for p in PROTECTED if p[1] != "/api/events"])
def test_protected_routes_pass_with_token(anon: TestClient, method: str, path: str) -> None:
    r = anon.request(method, path, headers={"Authorization": "Bearer " + TOKEN},
                     json={} if method != "GET" else None)
    assert r.status_code not in (401, 403), (method, path, r.text)


def test_wrong_cookie_is_401(anon: TestClient) -> None:
    anon.cookies.set(COOKIE_NAME, session_value("other-token"))
    assert anon.get("/api/tasks").status_code == 401
    anon.cookies.set(COOKIE_NAME, TOKEN)  # the raw token is not a session
    assert anon.get("/api/tasks").status_code == 401


def test_healthz_and_login_are_open(anon: TestClient) -> None:
    r = anon.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert anon.get("/login").status_code == 200
    assert anon.get("/static/style.css").status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_to_login(anon: TestClient, path: str) -> None:
    r = anon.get(path)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=" + path.replace("/", "%2F")


def test_cookie_login_flow(anon: TestClient, sched: Scheduler) -> None:
    r = anon.post("/login", data={"token": "wrong", "next": "/tasks/alpha"})
    assert r.status_code == 401 and "Wrong token" in r.text
    assert COOKIE_NAME not in r.cookies

    r = anon.post("/login", data={"token": TOKEN, "next": "/tasks/alpha"})
    assert r.status_code == 303 and r.headers["location"] == "/tasks/alpha"
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE_NAME}={session_value(TOKEN)}" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie

    assert anon.get("/").status_code == 200
    assert anon.get("/api/tasks").status_code == 200
    assert anon.get("/metrics").status_code == 200
    r = anon.post("/ui/tasks/alpha/disable", data={"next": "/"})
    assert r.status_code == 303 and sched.get_task("alpha").enabled is False

    r = anon.post("/logout")
    assert r.status_code == 303
    anon.cookies.clear()
    assert anon.get("/api/tasks").status_code == 401


def test_login_redirect_stays_on_site(anon: TestClient) -> None:
    r = anon.post("/login", data={"token": TOKEN, "next": "https://evil.example/"})
    assert r.headers["location"] == "/"
    r = anon.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert r.headers["location"] == "/"
    assert safe_next("/\\evil") == "/" and safe_next("/tasks/x?y=1") == "/tasks/x?y=1"


def test_cross_origin_posts_are_refused_even_without_token(sched: Scheduler) -> None:
    with TestClient(create_app(sched), follow_redirects=False) as c:
        r = c.post("/ui/tasks/alpha/disable", data={"next": "/"},
                   headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin"
        assert sched.get_task("alpha").enabled is True
        r = c.post("/ui/tasks/alpha/disable", data={"next": "/"},
                   headers={"Origin": "http://testserver"})
        assert r.status_code == 303 and sched.get_task("alpha").enabled is False
        # Reads from anywhere are fine (no token configured: loopback only).
        assert c.get("/api/tasks", headers={"Origin": "https://evil.example"}).status_code == 200


def test_no_token_means_no_auth(client: TestClient) -> None:
    assert client.get("/api/tasks").status_code == 200
    assert client.get("/", follow_redirects=False).status_code == 200
    assert client.get("/login", follow_redirects=False).status_code == 303


XSS = "<script>alert(1)</script>"


def test_xss_task_values_render_as_text(sched: Scheduler) -> None:
    sched.add_task(Task(id="xss", name=XSS, description='"><img src=x onerror=alert(2)>',
                        handler=OK_HANDLER, schedule=every(minutes=1)))
    sched.update_task("xss", metadata={"a": XSS})
    with TestClient(create_app(sched)) as c:
        for path in ["/", "/tasks/xss"]:
            html = c.get(path).text
            assert XSS not in html and "<img src=x" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert c.get("/api/tasks/xss").json()["name"] == XSS  # JSON keeps the value
        # A hostile path segment is escaped on the 404 page too.
        r = c.get("/tasks/" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        assert r.status_code == 404 and XSS not in r.text
        # and the login page's ``next`` field
        with TestClient(create_app(sched, token=TOKEN)) as t:
            page = t.get('/login?next=/"><script>alert(1)</script>').text
            assert XSS not in page


def test_xss_in_run_error_is_escaped(sched: Scheduler) -> None:
    def bad() -> None:
        raise ValueError(XSS)

    sched.add_task(Task(id="evil", handler=bad, schedule=every(minutes=1)))
    from tickwork.testing import settle
    sched.start()
    settle(sched)
    with TestClient(create_app(sched)) as c:
        for path in ["/", "/tasks/evil"]:
            html = c.get(path).text
            assert "ValueError: &lt;script&gt;" in html and XSS not in html
