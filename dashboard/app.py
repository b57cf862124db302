"""Concord dashboard: `streamlit run dashboard/app.py` (or `concord dashboard`).

Reads and acts only through the Concord API at CONCORD_API_URL with the signed-in user's
bearer, so the API enforces roles and writes the audit log. The role only decides what is drawn.
"""

from typing import Any

import streamlit as st

from dashboard import data
from dashboard.client import ApiError
from dashboard.format import humanize
from dashboard.identity import Identity, forwarded_token, token_expired, whoami
from dashboard.ui import CSS, api_url

ROLE_BLURB = {
    "viewer": "reads everything but the audit log",
    "executive": "reads everything; opens on the SLA overview",
    "finance": "reads everything; runs and resolves reconciliation",
    "ops": "reads everything; replays, resolves and assigns exceptions",
    "admin": "everything, including the audit log",
    "ingest": "may only post events",
}
SSO_EXPIRED = "your single sign-on session has expired; sign in again"


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:
        # No secrets.toml at all: API keys only.
        return False


def oidc_token() -> str | None:
    """The signed-in single sign-on user's token, forwarded to the API as the bearer.

    Streamlit fills `st.user.tokens` only with the kinds named by `expose_tokens` in the [auth]
    section; identity.forwarded_token picks one.
    """
    # Without an [auth] section st.user has no is_logged_in at all.
    if not getattr(st.user, "is_logged_in", False):
        return None
    return forwarded_token(st.user.tokens)


def sign_out() -> None:
    for key in ("auth_token", "auth_identity", "auth_error", "auth_refused"):
        st.session_state.pop(key, None)
    data.clear_live()
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def _forget(error: str) -> None:
    for key in ("auth_token", "auth_identity"):
        st.session_state.pop(key, None)
    st.session_state["auth_error"] = error


def _sso_token() -> str | None:
    """The single sign-on token to sign in with, or None (with the reason in auth_error)."""
    if not oidc_configured():
        return None
    token = oidc_token()
    if token is None:
        if getattr(st.user, "is_logged_in", False):
            st.session_state["auth_error"] = (
                "single sign-on worked, but Streamlit exposes no token to forward to the API: "
                'add expose_tokens = "id" to [auth] in .streamlit/secrets.toml'
            )
        return None
    if token == st.session_state.get("auth_refused"):
        # Refused once already (the reason is on the sign-in page): asking again on every
        # rerun would only add denied rows to the audit log.
        return None
    if token_expired(token):
        st.session_state["auth_error"] = SSO_EXPIRED
        return None
    return token


def _resolve_identity() -> Identity | None:
    identity = st.session_state.get("auth_identity")
    if isinstance(identity, Identity):
        # Streamlit keeps the provider's tokens for the cookie's life (30 days), longer than
        # the tokens live: an expired one would only fetch 401s, so ask for a new sign-in.
        if identity.via_sso and token_expired(str(st.session_state.get("auth_token"))):
            _forget(SSO_EXPIRED)
            return None
        return identity
    token = st.session_state.get("auth_token") or _sso_token()
    if not token:
        return None
    try:
        identity = whoami(data.client(api_url(), str(token)))
    except ApiError as exc:
        _forget(f"{exc.code}: {exc.message}")
        st.session_state["auth_refused"] = str(token)
        return None
    st.session_state["auth_token"] = str(token)
    st.session_state["auth_identity"] = identity
    st.session_state.pop("auth_error", None)
    return identity


def _sidebar(identity: Identity) -> None:
    with st.sidebar:
        st.markdown("### ◆ Concord")
        st.markdown(f"**{identity.display_name}**  \n:blue-badge[{humanize(identity.role)}]")
        st.caption(ROLE_BLURB.get(identity.role, ""))
        if identity.via_sso:
            st.caption("Signed in with single sign-on; the role comes from your identity provider.")
        if identity.source == "probe":
            st.caption("Role inferred from what the API admits (the API has no GET /v1/me yet).")
        st.caption(f"API: `{api_url()}`")
        st.button("Sign out", key="auth_sign_out", on_click=sign_out, icon=":material/logout:")


# Section -> page (its file in app_pages/ and its URL path) -> title and icon.
SECTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "Overview": {
        "sla": ("SLA overview", ":material/speed:"),
        "operations": ("Operations", ":material/monitor_heart:"),
    },
    "Work": {
        "transactions": ("Transactions & lineage", ":material/account_tree:"),
        "exceptions": ("Exceptions", ":material/report:"),
        "reconciliation": ("Reconciliation", ":material/balance:"),
    },
    "Admin": {"audit": ("Audit log", ":material/policy:")},
}


def _page(name: str, title: str, icon: str, *, default: bool) -> Any:
    return st.Page(f"app_pages/{name}.py", title=title, icon=icon, url_path=name, default=default)


def pages_for(identity: Identity) -> dict[str, list[Any]]:
    """The navigation a role sees; pages it cannot use are not listed at all."""
    if not identity.can_read:
        return {"": [_page("no_access", "No access", ":material/block:", default=True)]}
    landing = identity.landing
    return {
        section: [
            _page(name, title, icon, default=name == landing)
            for name, (title, icon) in pages.items()
        ]
        for section, pages in _sections_for(identity).items()
    }


def _sections_for(identity: Identity) -> dict[str, dict[str, tuple[str, str]]]:
    return {s: pages for s, pages in SECTIONS.items() if s != "Admin" or identity.is_admin}


def signed_out_pages() -> list[Any]:
    """The sign-in form, at the root and at every page's path.

    A link to a page (a bookmark, a link in an alert, a reload, which starts a new session)
    then shows the form instead of "Page not found", and after sign-in the page it named: a
    page's identity in Streamlit is its URL path, so the signed-in navigation picks it up.
    """
    signin = "app_pages/signin.py"
    return [
        st.Page(signin, title="Sign in", icon=":material/login:", default=True),
        *(
            st.Page(signin, title=title, url_path=name)
            for pages in SECTIONS.values()
            for name, (title, _) in pages.items()
        ),
    ]


def not_yours(path: str, identity: Identity) -> str | None:
    """Why the page a link named (opened signed out, then signed in) is not the one shown: the
    role may not open it, and Streamlit falls back to the role's first page without a word."""
    titles = {name: title for section in SECTIONS.values() for name, (title, _) in section.items()}
    mine = {name for section in _sections_for(identity).values() for name in section}
    if path not in titles or path in mine or not identity.can_read:
        return None
    return (
        f"The link opened **{titles[path]}**, which the {humanize(identity.role)} role cannot "
        "see; this is your start page. Ask an admin for a key with that role if you need it."
    )


def main() -> None:
    st.set_page_config(page_title="Concord", page_icon="◆", layout="wide")
    st.markdown(CSS, unsafe_allow_html=True)
    identity = _resolve_identity()
    if identity is None:
        asked = st.navigation(signed_out_pages(), position="hidden")
        st.session_state["auth_asked_for"] = asked.url_path
        asked.run()
        return
    _sidebar(identity)
    if note := not_yours(st.session_state.pop("auth_asked_for", ""), identity):
        st.info(note, icon=":material/lock:")
    st.navigation(pages_for(identity)).run()


main()
