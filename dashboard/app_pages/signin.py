"""Sign in with an API key (kept in this browser session only) or, if configured, with OIDC."""

import streamlit as st

from dashboard import data
from dashboard.client import ApiError
from dashboard.identity import whoami
from dashboard.ui import api_url, preload_charts


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:
        return False


def _sign_in(token: str) -> None:
    try:
        identity = whoami(data.client(api_url(), token))
    except ApiError as exc:
        st.session_state["auth_error"] = f"{exc.code}: {exc.message}"
        return
    st.session_state["auth_token"] = token
    st.session_state["auth_identity"] = identity
    if identity.landing == "sla":
        data.load_sla(api_url(), token, data.SLA_DEFAULT_WINDOW)
    st.session_state.pop("auth_error", None)


def _single_sign_on() -> None:
    # The user may be signed in to the provider and still refused by the API (no role, an
    # expired token): then they may sign in again, or sign out to use another account.
    if getattr(st.user, "is_logged_in", False):
        who = st.user.get("email") or st.user.get("sub") or "an unnamed user"
        st.caption(f"Single sign-on: signed in as {who}.")
        left, right = st.columns(2)
        left.button("Sign in again", key="signin_oidc", on_click=st.login, width="stretch",
                    icon=":material/key:")  # fmt: skip
        right.button("Sign out of single sign-on", key="signin_oidc_logout", on_click=_sso_logout,
                     width="stretch", icon=":material/logout:")  # fmt: skip
        return
    st.button("Sign in with single sign-on", key="signin_oidc", on_click=st.login,
              width="stretch", icon=":material/key:")  # fmt: skip


def _sso_logout() -> None:
    st.session_state.pop("auth_error", None)
    st.session_state.pop("auth_refused", None)
    st.logout()


def render() -> None:
    _, middle, _ = st.columns([1, 1.4, 1])
    with middle:
        st.title("◆ Concord")
        st.markdown(
            "Subscription-to-cash control plane: SLAs, exceptions, lineage and reconciliation."
        )
        with st.container(border=True):
            st.subheader("Sign in")
            with st.form("signin_form", border=False):
                key = st.text_input(
                    "API key",
                    type="password",
                    key="signin_key",
                    placeholder="ck_…",
                    help="Kept in this browser session only; sent to the API as a bearer token.",
                )
                submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
            if submitted:
                if key.strip():
                    _sign_in(key.strip())
                    if "auth_identity" in st.session_state:
                        st.rerun()
                else:
                    st.session_state["auth_error"] = "enter an API key"
            if err := st.session_state.get("auth_error"):
                st.error(f"Sign-in failed — {err}")
            if _oidc_configured():
                st.divider()
                _single_sign_on()
        st.caption(
            f"API: `{api_url()}` · ask an admin for a key: `concord keys create --role viewer --name you`"
        )
    preload_charts()


render()
