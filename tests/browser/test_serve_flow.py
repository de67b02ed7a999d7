"""``byod serve``'s pages in a real browser (Chromium, headless, driven by Playwright),
against the real service (uvicorn on 127.0.0.1, a free port) over local Convex-compatible
deployments: a main deployment with the main bundle and the user's own deployment.

One user walks connect → Test Connection → Save & Deploy (live stages) → status → block
(the key revoked through the local deployment's fault switch, found by the dashboard's
health check) → the blocker screen → three failed retries ("Still having issues?") → the key
works again, retry → disconnect, migrating the content back to main. Along the way: the
connect form's keyboard focus order, the https hint under the URL field, no deploy key in
any page, and no horizontal scroll on a phone (390 px). The operator dashboard is checked
the same way: totals, failures first, the version graph, the audit log, the health check
behind its confirmation.

Screenshots (``serve-<page>-<desktop|phone>.png``) go to ``BYOD_ARTIFACTS_DIR`` when set,
else to the test's ``tmp_path``. Skipped without Chromium, Playwright or the npm toolchain,
except under CI (``CI`` set), where a missing browser fails (as the report page's test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.commands.service import create_token
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.ports.deployment import DeploymentTarget
from engine.registry.sqlite import SqliteStore
from engine.vault import Vault, generate_key

from .chromium import VIEWPORTS

pytestmark = [pytest.mark.browser, pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "browser-test-signing-secret-" + "y" * 24
DEPLOY_TIMEOUT_MS = 240_000


@dataclass
class Service:
    base: str
    app: Any
    ws: Workspace
    settings: Any
    fleet: Any
    main: Any
    user_dep: Any
    admin_token: str

    @property
    def service(self) -> Any:
        return self.app.state.service

    def secrets(self) -> list[str]:
        return [self.main.admin_key, self.user_dep.admin_key, self.admin_token, SECRET]


@pytest.fixture(scope="module")
def served(byod_local_fleet: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on a free loopback port over two new local deployments (main, with the
    main bundle of the head version, and one for the user), stopped at the end."""

    import uvicorn
    from pydantic import SecretStr

    from engine.demo.run import deploy_main
    from engine.serve.app import create_app
    from engine.serve.settings import ServeSettings

    main_dep, user_dep = byod_local_fleet.add(2)
    tmp = tmp_path_factory.mktemp("serve-browser")
    config = EngineConfig(registry_path=tmp / "registry.sqlite3",
                          versions_dir=ROOT / "schema_versions", http_timeout_s=15.0)
    ws = Workspace.open(config, store=SqliteStore(config.registry_path),
                        vault=Vault.from_hex(generate_key()))
    main_target = DeploymentTarget("main", main_dep.url, main_dep.admin_key, True)
    deploy_main(main_target, ws.graph.resolve("head"), config)
    settings = ServeSettings(secret=SecretStr(SECRET), allow_insecure_local=True)
    app = create_app(ws, settings, main_client=ws.connector.client(main_target))
    _, admin_token = create_token(ws, "operator", "admin")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="byod-serve-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start within 30 s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Service(base=f"http://127.0.0.1:{port}", app=app, ws=ws, settings=settings,
                      fleet=byod_local_fleet, main=main_dep, user_dep=user_dep,
                      admin_token=admin_token)
    finally:
        byod_local_fleet.set_fault(user_dep.name, "none")
        server.should_exit = True
        thread.join(30)


_OVERFLOW = """() => {
  const vw = window.innerWidth;
  const wide = Array.from(document.body.querySelectorAll('*'))
    .filter(el => !el.closest('.scroll, .graph, dialog'))
    .filter(el => el.getBoundingClientRect().right > vw + 0.5)
    .map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className);
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: vw, wide: wide};
}"""


_UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]'))
  .filter(e => e.offsetParent !== null)
  .filter(e => ['INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName)
               ? !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               : !(e.textContent.trim() || e.getAttribute('aria-label')))
  .map(e => e.tagName + '#' + e.id)"""


def _accessible(page: Any) -> None:
    """Every visible control has a label or a name a screen reader reads."""

    assert page.evaluate(_UNLABELLED) == []


def _fits(page: Any) -> None:
    o = page.evaluate(_OVERFLOW)
    assert o["scrollWidth"] <= o["innerWidth"] and o["wide"] == [], o


def _login(context: Any, s: Service, user_id: str) -> Any:
    from engine.serve.auth import mint_user_token

    page = context.new_page()
    page.goto(f"{s.base}/ui/login?token={mint_user_token(s.settings, user_id)}")
    assert page.url.endswith("/ui/settings"), page.url
    return page


def _no_secret(page: Any, s: Service) -> None:
    html = page.content()
    for secret in s.secrets():
        assert secret not in html
        assert secret.split("|")[-1] not in html


def _phone(browser: Any, s: Service, path: str, name: str, artifacts: Path,
           admin: bool = False) -> None:
    """The page at phone width: no horizontal scroll; a screenshot."""

    context = browser.new_context(viewport=VIEWPORTS["phone"], is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    try:
        if admin:
            page = context.new_page()
            _admin_login(page, s)
        else:
            page = _login(context, s, "alice")
        page.goto(s.base + path)
        page.wait_for_load_state("load")
        _fits(page)
        page.screenshot(path=str(artifacts / f"serve-{name}-phone.png"), full_page=True)
    finally:
        context.close()


def _admin_login(page: Any, s: Service) -> None:
    page.goto(f"{s.base}/admin/login")
    page.fill("#token", s.admin_token)
    page.press("#token", "Enter")
    page.wait_for_url(f"{s.base}/admin/")


def _wait_job(page: Any, timeout_ms: int = DEPLOY_TIMEOUT_MS) -> None:
    page.wait_for_selector('#job[data-finished="true"]', state="attached", timeout=timeout_ms)


def _seed(s: Service, user_id: str) -> dict[str, int]:
    """A conversation with threaded messages on the user's deployment (head schema),
    through the bundle's own ``byod:importPage``."""

    from engine.convex.http import ConvexHttpClient

    t = 1_714_000_000_000.0
    with ConvexHttpClient(s.ws.vault.target_for(s.service.store.get_user(user_id))) as c:
        [conv] = c.mutation("byod:importPage", {"table": "conversations", "documents": [
            {"userId": user_id, "title": "Trip to Lisbon", "messageCount": 3.0,
             "createdAt": t, "updatedAt": t}]})
        parent = None
        for i, (role, text) in enumerate([("user", "What should I pack?"),
                                          ("assistant", "Light layers and good shoes."),
                                          ("user", "Thanks!")]):
            doc = {"conversationId": conv, "userId": user_id, "role": role, "content": text,
                   "createdAt": t + i, "updatedAt": t + i}
            if parent is not None:
                doc["parentMessageId"] = parent
            [parent] = c.mutation("byod:importPage", {"table": "messages", "documents": [doc]})
    return {"conversations": 1, "messages": 3}


def test_connect_block_retry_disconnect_in_a_browser(browser: Any, served: Service,
                                                      artifacts: Path) -> None:
    s = served
    dep = s.user_dep
    context = browser.new_context(viewport=VIEWPORTS["desktop"])
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    try:
        page = _login(context, s, "alice")
        assert page.inner_text("#connect-title") == "Connect your database"
        assert page.is_visible("#before-you-start")
        page.screenshot(path=str(artifacts / "serve-connect-desktop.png"), full_page=True)
        _phone(browser, s, "/ui/settings", "connect", artifacts)

        _accessible(page)
        # the keyboard reaches the form's controls in reading order, each with a focus ring
        page.focus("#url")
        order = [page.evaluate("document.activeElement.id")]
        for _ in range(5):
            page.keyboard.press("Tab")
            order.append(page.evaluate(
                "document.activeElement.id || document.activeElement.tagName.toLowerCase()"))
            ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert ring not in ("none", ""), (order[-1], ring)
        # URL, key, its show/hide button, "where do I find it", Test, Save & Deploy
        assert order == ["url", "deploy_key", "button", "summary", "test-button",
                         "save-button"], order

        # an http URL that is not loopback: the hint under the field, named
        page.fill("#url", "http://example.com")
        page.focus("#deploy_key")
        assert page.is_visible("#url-error") and "https://" in page.inner_text("#url-error")
        assert page.get_attribute("#url", "aria-invalid") == "true"

        # the key is masked; show/hide toggles it
        page.fill("#url", dep.url)
        page.fill("#deploy_key", dep.admin_key)
        assert page.get_attribute("#deploy_key", "type") == "password"
        toggle = page.locator("#credentials-form button.toggle-key")
        toggle.click()
        assert page.get_attribute("#deploy_key", "type") == "text"
        assert toggle.get_attribute("aria-pressed") == "true"
        toggle.click()
        assert page.get_attribute("#deploy_key", "type") == "password"

        # Test Connection: in place, nothing saved
        page.click("#test-button")
        page.wait_for_selector("#test-result .result.ok", timeout=60_000)
        assert "Connection works" in page.inner_text("#test-result")
        assert s.service.store.find_user("alice") is None
        page.screenshot(path=str(artifacts / "serve-tested-desktop.png"), full_page=True)

        # Save & Deploy: the stages live, then the cards
        page.click("#save-button")
        page.wait_for_url("**/ui/settings?job=*")
        page.wait_for_selector("#job-stages li[data-stage]", timeout=30_000)
        page.screenshot(path=str(artifacts / "serve-deploying-desktop.png"), full_page=True)
        _wait_job(page)
        page.wait_for_function("() => { const b = document.querySelector('#status-badge');"
                               " return b && b.textContent.trim() === 'Connected'; }",
                               timeout=30_000)
        assert page.inner_text("#instance-version") == s.service.head_version()
        stages = page.eval_on_selector_all("#job-stages li", "els => els.map(e => "
                                           "[e.dataset.stage, e.dataset.state])")
        assert ["deploying", "done"] in stages and all(st == "done" for _, st in stages), stages
        _no_secret(page, s)
        _accessible(page)
        page.screenshot(path=str(artifacts / "serve-status-desktop.png"), full_page=True)
        _phone(browser, s, "/ui/settings", "status", artifacts)

        # some content on the user's deployment, to migrate back later
        seeded = _seed(s, "alice")

        # the key is revoked; the operator's health check finds it and blocks the user
        s.fleet.set_fault(dep.name, "revoked")
        admin = context.new_page()
        _admin_login(admin, s)
        admin.click("#health-button")
        admin.wait_for_selector("#confirm")
        assert "Check health now" in admin.inner_text("#confirm")
        admin.click("#confirm-yes")
        admin.wait_for_url("**/admin/?job=*")
        deadline = time.monotonic() + 60
        while s.service.store.get_user("alice").connection_status != "error":
            assert time.monotonic() < deadline, "the health check did not block alice"
            time.sleep(0.5)

        # the blocker screen: reason, causes, retry; help after three failed retries
        page.goto(f"{s.base}/ui/blocked")
        assert page.inner_text("#blocked-title") == "Your database is unavailable"
        assert page.inner_text("#reason").strip() not in ("", "unknown")
        assert "revoked or rotated" in page.inner_text("#causes")
        assert not page.is_visible("#still-having-issues")
        _accessible(page)
        page.screenshot(path=str(artifacts / "serve-blocked-desktop.png"), full_page=True)
        _phone(browser, s, "/ui/blocked", "blocked", artifacts)
        for attempt in range(3):
            page.click("#retry-button")
            page.wait_for_url("**/ui/blocked?retried=1")
            assert not page.is_visible("#unblocked")
        assert page.is_visible("#still-having-issues")
        assert "3 retries failed" in page.inner_text("#failed-count")
        page.screenshot(path=str(artifacts / "serve-blocked-help-desktop.png"), full_page=True)

        s.fleet.set_fault(dep.name, "none")
        page.click("#retry-button")
        page.wait_for_selector("#unblocked")
        assert s.service.store.get_user("alice").connection_status == "connected"
        page.screenshot(path=str(artifacts / "serve-unblocked-desktop.png"), full_page=True)

        # disconnect, migrating back: the dialog, its three choices, the stages
        page.goto(f"{s.base}/ui/settings")
        page.click("#open-disconnect")
        assert page.is_visible("#disconnect-dialog")
        for mode in ("keep", "migrate", "delete"):
            assert page.is_visible(f"#mode-{mode}")
        page.check("#mode-delete")
        assert page.is_visible("#confirm")
        page.check("#mode-migrate")
        assert not page.is_visible("#confirm")
        assert page.inner_text("#disconnect-submit") == "Migrate back and disconnect"
        page.screenshot(path=str(artifacts / "serve-disconnect-desktop.png"))
        page.click("#disconnect-submit")
        page.wait_for_url("**/ui/settings?job=*")
        _wait_job(page)
        page.wait_for_selector("#connect", timeout=30_000)
        user = s.service.store.get_user("alice")
        assert user.connection_status == "disconnected"
        job_id = page.url.split("job=", 1)[1]
        result = s.service.job(job_id).result or {}
        assert result.get("verified") is True, result
        messages = result["tables"]["messages"]
        assert messages["main_count"] == messages["source_count"] == seeded["messages"]
        page.screenshot(path=str(artifacts / "serve-disconnected-desktop.png"), full_page=True)
        _no_secret(page, s)
    finally:
        context.close()
    assert all(u.startswith(s.base) for u in requests), \
        [u for u in requests if not u.startswith(s.base)]


def test_dashboard_in_a_browser(browser: Any, served: Service, artifacts: Path) -> None:
    s = served
    store = s.service.store
    # a user in error beside the others: failures come first
    url_ct, key_ct = s.ws.vault.encrypt_credentials("zed", "https://zed-1.convex.cloud",
                                                    "prod:zed-1|" + "c" * 64)
    store.upsert_credentials("zed", url_ct=url_ct, key_ct=key_ct)
    store.set_connection_status("zed", "error", error="cannot connect: no answer within 10 s")
    context = browser.new_context(viewport=VIEWPORTS["desktop"])
    try:
        page = context.new_page()
        _admin_login(page, s)
        totals = dict(page.eval_on_selector_all(
            "#totals [data-total]", "els => els.map(e => [e.dataset.total, "
            "e.querySelector('b').textContent])"))
        assert int(totals["error"]) >= 1 and int(totals["users"]) >= 1
        statuses = page.eval_on_selector_all("#users tbody tr", "els => els.map(e => "
                                             "[e.dataset.user, e.dataset.status])")
        first_ok = next(i for i, (_, st) in enumerate(statuses) if st != "error")
        assert all(st == "error" for _, st in statuses[:first_ok])
        assert ["zed", "error"] in statuses[:first_ok]
        assert page.locator("svg g.node").count() == len(s.ws.graph.topological_order())
        assert page.locator("#audit tbody tr").count() > 3
        assert "connection_status" in page.inner_text("#audit")

        # the filter, in place
        page.select_option("#filter-status", "error")
        visible = page.eval_on_selector_all("#users tbody tr", "els => els.filter(e => "
                                            "e.offsetParent !== null).map(e => e.dataset.status)")
        assert visible and set(visible) == {"error"}
        page.select_option("#filter-status", "")
        page.fill("#filter-q", "zed")
        assert "1 of" in page.inner_text("#filter-count")
        page.fill("#filter-q", "")
        _accessible(page)
        page.screenshot(path=str(artifacts / "serve-dashboard-desktop.png"), full_page=True)
        _no_secret(page, s)

        # the rollout asks first; cancelled, then confirmed: the page follows the job by
        # itself (polling) until it has finished
        page.click("#rollout-button")
        page.wait_for_selector("#confirm")
        assert "Roll out to" in page.inner_text("#confirm-yes")
        page.click("#confirm-cancel")
        page.wait_for_selector("#totals")
        assert not page.is_visible("#confirm")
        page.click("#rollout-button")
        page.click("#confirm-yes")
        page.wait_for_url("**/admin/?job=*")
        job_id = page.url.split("job=", 1)[1]
        page.wait_for_selector(f'#fleet-jobs tr[data-job="{job_id}"]', timeout=30_000)
        assert page.get_attribute(f'#fleet-jobs tr[data-job="{job_id}"]', "data-state") in (
            "queued", "running", "succeeded")
        page.wait_for_selector(f'#fleet-jobs tr[data-job="{job_id}"][data-state="succeeded"]',
                               timeout=120_000)  # no reload by the test: the page polls
        assert page.inner_text(f'#fleet-jobs tr[data-job="{job_id}"] td:nth-child(2)') == "rollout"
    finally:
        context.close()
    _phone(browser, s, "/admin/", "dashboard", artifacts, admin=True)


def test_the_settings_page_works_without_scripts(browser: Any, served: Service,
                                                 artifacts: Path) -> None:
    """Progressive enhancement: with scripts off the form still tests credentials (a real
    POST, the answer on the page again), the key is never sent back, the show/hide button
    stays hidden and the disconnect choices are a page of their own."""

    s = served
    context = browser.new_context(viewport=VIEWPORTS["phone"], java_script_enabled=False)
    try:
        page = _login(context, s, "nojs")
        assert not page.is_visible("#credentials-form button.toggle-key")
        page.fill("#url", s.user_dep.url)
        page.fill("#deploy_key", s.user_dep.admin_key)
        page.click("#test-button")
        page.wait_for_load_state("load")
        assert page.url.endswith("/ui/test")
        assert "Connection works" in page.inner_text("#test-result")
        assert page.input_value("#url") == s.user_dep.url
        assert page.input_value("#deploy_key") == ""
        _no_secret(page, s)
        _fits(page)
        page.screenshot(path=str(artifacts / "serve-nojs-tested-phone.png"), full_page=True)
        assert s.service.store.find_user("nojs") is None
    finally:
        context.close()
