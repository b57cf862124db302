"""Single sign-on in the dashboard: the user's token from `st.user.tokens` goes to the API.

AppTest lets a test set `st.user` (AppTest.user) and the [auth] secrets, so the part of the
flow after the provider's redirect runs for real here: the dashboard forwards the ID token,
and the API (with CONCORD_OIDC_ISSUER pointing at the test provider) verifies it against the
provider's JWKS over HTTP. What AppTest cannot do is the redirect to the provider itself
(`st.login`), which needs a browser and Streamlit's own HTTP server.
"""

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from api.settings import ApiSettings
from dashboard.identity import forwarded_token, token_expired
from lineage.enums import Role
from tests.dashboard.conftest import Seeded
from tests.dashboard.test_browser import (
    ARGS,
    ARTIFACTS,
    CHROMIUM,
    DASHBOARD_FLAGS,
    ROOT,
    TIMEOUT_MS,
    _require_chromium,
)
from tests.dashboard.test_pages import APP, audit, exception_id, keys_of, page, text_of, tx
from tests.factories import WEBHOOK_SECRET
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, running_provider
from tests.support.ports import free_port_run
from tests.support.servers import running_streamlit


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with running_provider() as p:
        yield p


@pytest.fixture
def api_settings(database_url: str, redis_url: str, provider: OidcProvider) -> ApiSettings:
    """The API of `seeded`, with single sign-on against the test provider."""
    return ApiSettings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        oidc_issuer=provider.issuer,
        oidc_audience=CLIENT_ID,
    )


def auth_secrets(provider: OidcProvider, expose: str | None = "id") -> dict[str, Any]:
    section: dict[str, Any] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "test-cookie-secret",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "server_metadata_url": f"{provider.issuer}/.well-known/openid-configuration",
    }
    if expose:
        section["expose_tokens"] = expose
    return {"auth": section}


def sso_user(provider: OidcProvider, role: str | None, **claims: Any) -> dict[str, Any]:
    """What Streamlit puts in st.user after the provider's redirect, with the ID token."""
    email = f"{role or 'nobody'}@example.com"
    extra = {"concord_role": role} if role else {}
    token = provider.token(sub=f"sub-{email}", email=email, **{**extra, **claims})
    return {"is_logged_in": True, "email": email, "sub": f"sub-{email}", "tokens": {"id": token}}


def sso_app(
    seeded: Seeded,
    provider: OidcProvider,
    user: dict[str, Any],
    *,
    expose: str | None = "id",
    **state: Any,
) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets = auth_secrets(provider, expose)
    at.user = user
    at.session_state["auth_api_url"] = seeded.api_url
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def sidebar_text(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in (*at.sidebar.markdown, *at.sidebar.caption))


def test_an_sso_operator_is_signed_in_by_token_and_replays_under_their_own_name(
    seeded: Seeded, provider: OidcProvider
) -> None:
    user = sso_user(provider, "ops")
    at = sso_app(seeded, provider, user, exc_selected=exception_id(seeded))

    assert not at.exception
    sidebar = sidebar_text(at)
    assert "ops@example.com" in sidebar
    assert "Ops" in sidebar
    assert "single sign-on" in sidebar
    assert at.session_state["auth_token"] == user["tokens"]["id"]

    at = page(at, "exceptions")
    at.text_input(key="exc_replay_reason").input("ERP is back").run()
    at.button(key="exc_replay_go").click().run()

    assert not at.exception
    assert tx(seeded, seeded.failed)["run_count"] == 2
    [row] = audit(seeded, "transaction.replay")
    assert (row["actor"], row["role"]) == ("oidc:ops@example.com", "ops")


def test_an_sso_viewer_gets_no_operator_controls(seeded: Seeded, provider: OidcProvider) -> None:
    at = sso_app(seeded, provider, sso_user(provider, "viewer"), exc_selected=exception_id(seeded))
    at = page(at, "exceptions")

    assert not at.exception
    assert "Viewer" in sidebar_text(at)
    assert "exc_replay_go" not in keys_of(at)


def test_an_sso_user_without_a_role_stays_on_the_sign_in_page_with_the_reason(
    seeded: Seeded, provider: OidcProvider
) -> None:
    at = sso_app(seeded, provider, sso_user(provider, None))

    assert not at.exception
    assert "no_role" in text_of(at)
    assert "signed in as nobody@example.com" in text_of(at)
    assert {"signin_oidc", "signin_oidc_logout"} <= keys_of(at)
    # The refusal is remembered: a rerun does not ask the API (and the audit log) again.
    denied = audit_denials(seeded)
    at.run()
    assert audit_denials(seeded) == denied


def audit_denials(seeded: Seeded) -> int:
    body = httpx.get(
        f"{seeded.api_url}/v1/audit",
        params={"outcome": "denied"},
        headers={"Authorization": f"Bearer {seeded.keys[Role.ADMIN]}"},
    ).json()
    return len(body["items"])


def test_an_expired_sso_token_asks_for_a_new_sign_in(
    seeded: Seeded, provider: OidcProvider
) -> None:
    at = sso_app(seeded, provider, sso_user(provider, "ops", expires_in=-60))

    assert not at.exception
    assert "expired" in text_of(at)
    assert "auth_identity" not in at.session_state


def test_without_expose_tokens_the_page_says_what_to_configure(
    seeded: Seeded, provider: OidcProvider
) -> None:
    at = sso_app(seeded, provider, {**sso_user(provider, "ops"), "tokens": {}}, expose=None)

    assert not at.exception
    assert 'expose_tokens = "id"' in text_of(at)


def test_the_id_token_is_forwarded_before_an_access_token() -> None:
    assert forwarded_token({"access": "opaque", "id": "id.jwt.token"}) == "id.jwt.token"
    assert forwarded_token({"access": "access.jwt.token"}) == "access.jwt.token"
    assert forwarded_token({}) is None


def test_token_expiry_is_read_from_the_token(provider: OidcProvider) -> None:
    fresh = provider.token(expires_in=300)
    assert not token_expired(fresh)
    assert token_expired(fresh, now=time.time() + 600)
    assert not token_expired("not-a-jwt")


@contextmanager
def streamlit_with_sso(api_url: str, provider: OidcProvider, tmp_path: Path) -> Iterator[str]:
    """`streamlit run` with an [auth] section for the test provider (a secrets file of its own)."""
    port = free_port_run()
    section = {
        **auth_secrets(provider)["auth"],
        "redirect_uri": f"http://127.0.0.1:{port}/oauth2callback",
    }
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("[auth]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in section.items()))
    with running_streamlit(
        "dashboard/app.py",
        port=port,
        args=["--secrets.files", str(secrets), *DASHBOARD_FLAGS],
        env={**os.environ, "CONCORD_API_URL": api_url},
        cwd=ROOT,
    ) as url:
        yield url


def test_st_login_in_a_real_browser_signs_in_through_the_provider(
    api_url: str, provider: OidcProvider, tmp_path: Path
) -> None:
    """The whole redirect dance: Streamlit → provider → /oauth2callback → cookie → API."""
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    provider.next_user = {"sub": "sso-olga", "email": "olga@example.com", "concord_role": "ops"}
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_with_sso(api_url, provider, tmp_path) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.get_by_role("button", name="Sign in with single sign-on").click()

            expect(page.get_by_text("olga@example.com")).to_be_visible()
            expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "sso-01-signed-in.png"))

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible()
        finally:
            browser.close()
