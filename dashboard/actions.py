"""Operator controls: replay one, resolve one, assign, and bulk replay with a dry run first.

Each control calls the API with the signed-in key; the API checks the role, writes the audit
row and refuses what is unsafe (a busy transaction, an identity change in an edited payload).
"""

import difflib
import json
from typing import Any

import streamlit as st

from dashboard import data
from dashboard.client import ApiError
from dashboard.format import humanize, when
from dashboard.ui import Ctx, show_error, state_badge

RESOLUTIONS = ["fixed_in_target", "posted_by_hand", "not_needed", "duplicate", "other"]
SETTLED = {"posted", "exception", "manually_resolved", "reversed", "ignored"}
BULK_UNFINISHED = {"pending", "running"}
# Known canonical fields, in the order the API's canonical Invoice model lists them.
PAYLOAD_FIELDS = ("invoice_id", "customer_id", "subscription_id", "amount_minor", "currency")


def payload_from(tx: dict[str, Any]) -> dict[str, Any]:
    """A starting point for an edited payload: the workflow input the latest run used.

    The API gives ops and admins the canonical input (`canonical.effective`: the latest run's
    edited input, else the one mapped at intake), invoice lines and all. Without it, fall back
    to the business keys every transaction carries.
    """
    canonical = tx.get("canonical")
    if isinstance(canonical, dict) and isinstance(canonical.get("effective"), dict):
        return dict(canonical["effective"])
    return {k: tx.get(k) for k in PAYLOAD_FIELDS}


def payload_source(tx: dict[str, Any]) -> str:
    """Where payload_from started, in words, for a caption under the editor."""
    canonical = tx.get("canonical")
    if not isinstance(canonical, dict) or not isinstance(canonical.get("effective"), dict):
        return "Only the business keys are known here; fields you leave out take their defaults."
    if canonical.get("latest_run_override") is not None:
        return f"Starting from the edited input run {canonical.get('latest_run')} used."
    return "Starting from the canonical input mapped when the event arrived."


def payload_diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    a = json.dumps(before, indent=2, sort_keys=True).splitlines()
    b = json.dumps(after, indent=2, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "original", "edited", lineterm="", n=1))


def follow(c: Ctx) -> None:
    """After a replay or a resolution: what the API answered, then the transaction's state
    until it settles."""
    cid = st.session_state.get("exc_followed")
    if not cid:
        return
    flash = st.session_state.get("exc_flash") or {}
    if flash:
        st.success(flash["message"])
    if flash.get("diff"):
        st.dataframe(
            [
                {"Change": d["op"], "Field": d["path"], "Was": json.dumps(d.get("old")),
                 "Now": json.dumps(d.get("new"))}
                for d in flash["diff"]
            ],
            hide_index=True,
            key="exc_replay_diff_table",
        )  # fmt: skip

    # Polled until it settles; after that (and after a resolution, settled at once) the state
    # is read once per run of the page rather than every 2 s for as long as the page is open.
    @st.fragment(run_every=None if st.session_state.get("exc_follow_settled") else "2s")
    def status() -> None:
        try:
            tx = c.client.transaction(str(cid))
        except ApiError as exc:
            show_error(exc, doing="follow the replay")
            return
        done = tx["state"] in SETTLED
        suffix = "" if done else " · following…"
        st.markdown(f"Transaction `{cid}` is now {state_badge(tx['state'])}{suffix}")
        if done and not st.session_state.get("exc_follow_settled"):
            # Once: the queue and tiles around this fragment must show the settled state too.
            st.session_state["exc_follow_settled"] = True
            data.clear_live()
            st.rerun(scope="app")

    status()


def replay_panel(c: Ctx, tx: dict[str, Any]) -> None:
    cid = tx["correlation_id"]
    steps = sorted({s["name"] for r in tx["runs"] for s in r["steps"]})
    reason = st.text_input("Reason (required, kept in the audit log)", key="exc_replay_reason",
                           placeholder="e.g. ERP was down 10:02–10:20; retrying")  # fmt: skip
    from_step = st.selectbox(
        "From step", ["(the first failed step)", *steps], key="exc_replay_from"
    )
    edit = st.toggle("Edit the payload for this run", key="exc_replay_edit",
                     help="The stored original is never changed; the API refuses edits to the record's identity.")  # fmt: skip
    payload: dict[str, Any] | None = None
    if edit:
        original = payload_from(tx)
        text = st.text_area("Payload (canonical JSON)", value=json.dumps(original, indent=2, sort_keys=True),
                            height=320, key=f"exc_replay_payload_{cid}")  # fmt: skip
        st.caption(payload_source(tx))
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            st.error(f"Not valid JSON: {exc}")
            return
        diff = payload_diff(original, payload or {})
        st.code(diff or "(no change)", language="diff")
    if st.button("Replay", key="exc_replay_go", type="primary", icon=":material/replay:",
                 disabled=not reason.strip()):  # fmt: skip
        try:
            result = c.client.replay(
                cid,
                reason=reason,
                from_step=None if from_step.startswith("(") else from_step,
                payload=payload,
            )
        except ApiError as exc:
            show_error(exc, doing="replay")
            return
        data.clear_live()
        held = (
            " The target already holds the record: the run will find it, not post again."
            if result["target_holds_record"]
            else ""
        )
        # Shown at the top of the page by follow(), which needs a fresh run to start polling.
        st.session_state["exc_followed"] = cid
        st.session_state["exc_follow_settled"] = False
        st.session_state["exc_flash"] = {
            "message": f"Replay started: run {result['run_number']}.{held}",
            "diff": result["payload_diff"],
        }
        st.rerun()


def resolve_panel(c: Ctx, tx: dict[str, Any]) -> None:
    with st.form("exc_resolve_form", border=False):
        resolution = st.selectbox(
            "Resolution", RESOLUTIONS, key="exc_resolve_resolution", format_func=humanize
        )
        note = st.text_area("Note (required)", key="exc_resolve_note",
                            placeholder="What was done, and where (e.g. posted by hand as INV-204)")  # fmt: skip
        go = st.form_submit_button("Resolve", type="primary", icon=":material/task_alt:")
    if go:
        if not note.strip():
            st.error("A note is required.")
            return
        try:
            result = c.client.resolve(tx["correlation_id"], resolution=resolution, note=note)
        except ApiError as exc:
            show_error(exc, doing="resolve")
            return
        data.clear_live()
        # Shown at the top by follow(), above a queue drawn again without what was closed.
        st.session_state["exc_followed"] = tx["correlation_id"]
        st.session_state["exc_follow_settled"] = True
        st.session_state["exc_flash"] = {
            "message": f"Resolved as {humanize(result['resolution'])}; closed exceptions "
            f"{', '.join(map(str, result['closed_exceptions'])) or 'none'}."
        }
        st.rerun()


def assign_panel(c: Ctx, item: dict[str, Any]) -> None:
    owner = st.text_input(
        "Owner", value=item.get("owner") or c.identity.name, key="exc_assign_owner"
    )
    left, right = st.columns(2)
    new_owner: str | None = None
    if left.button("Assign", key="exc_assign_go", icon=":material/person_add:"):
        new_owner = owner.strip() or None
    elif right.button(
        "Hand back to the queue", key="exc_assign_clear", disabled=not item.get("owner")
    ):
        new_owner = ""
    if new_owner is None:
        return
    try:
        c.client.assign(item["id"], new_owner or None)
    except ApiError as exc:
        show_error(exc, doing="assign")
        return
    data.clear_live()
    st.rerun()


def bulk_panel(c: Ctx, workflow: str | None) -> None:
    """Bulk replay by the current filter: dry run, confirm with the count, then follow progress."""
    flt: dict[str, Any] = {"state": ["exception"], **({"workflow": workflow} if workflow else {})}
    st.caption(
        f"Replays every transaction in state exception{f' of workflow {workflow}' if workflow else ''}"
        " that was already in it at the preview."
    )
    if st.button("Preview (dry run)", key="exc_bulk_preview_go", icon=":material/preview:"):
        st.session_state.pop("exc_bulk_confirm", None)  # a new count needs a new confirmation
        try:
            # The answer's filter is pinned to the moment of the preview (updated_until):
            # transactions that fail while the user reads and confirms stay out of the set.
            st.session_state["exc_bulk_preview"] = {
                "for": flt,
                **c.client.bulk_replay_create(flt, dry_run=True),
            }
        except ApiError as exc:
            show_error(exc, doing="preview the bulk replay")
    preview = st.session_state.get("exc_bulk_preview")
    if preview and preview["for"] == flt:
        cols = st.columns(3)
        cols[0].metric("Would replay", f"{preview['count']:,}")
        cols[1].metric("Some steps already done", f"{preview['already_held']:,}",
                       help="Transactions with a record already in a target system: replay "
                            "finds those records and does not post them again")  # fmt: skip
        cols[2].metric("Allowed at once", f"{preview['max_allowed']:,}")
        if preview["sample"]:
            st.dataframe([{"Correlation ID": t["correlation_id"], "Invoice": t.get("invoice_id") or "—",
                           "State": humanize(t["state"])} for t in preview["sample"]],
                         hide_index=True, key="exc_bulk_sample")  # fmt: skip
        reason = st.text_input("Reason (required)", key="exc_bulk_reason")
        sure = st.checkbox(
            f"Yes, replay these {preview['count']} transactions", key="exc_bulk_confirm"
        )
        if st.button("Start bulk replay", key="exc_bulk_go", type="primary",
                     disabled=not (sure and reason.strip() and preview["count"])):  # fmt: skip
            try:
                job = c.client.bulk_replay_create(preview["filter"], dry_run=False, expected_count=preview["count"],
                                                  reason=reason, name=f"exceptions {workflow or 'all'}")  # fmt: skip
            except ApiError as exc:
                show_error(exc, doing="start the bulk replay")
                return
            st.session_state["exc_bulk_job"] = job["id"]
            st.session_state.pop("exc_bulk_preview", None)
            data.clear_live()
            # Drawn again: the preview and its confirmation go, the job's progress shows.
            st.rerun()
    bulk_progress(c)


def bulk_progress(c: Ctx) -> None:
    job_id = st.session_state.get("exc_bulk_job")
    if job_id is None:
        return

    # Polled while the job runs; once it has finished, read once per run of the page rather
    # than every 2 s for as long as the page stays open.
    @st.fragment(run_every=None if st.session_state.get("exc_bulk_finished") == job_id else "2s")
    def progress() -> None:
        try:
            job = c.client.bulk_replay(int(job_id))
        except ApiError as exc:
            show_error(exc, doing="follow the bulk replay")
            return
        total = max(1, job["expected_count"])
        st.progress(min(1.0, job["done"] / total),
                    text=f"Bulk replay #{job['id']} — {humanize(job['state'])}: {job['done']} of {job['expected_count']}")  # fmt: skip
        if job["progress"]:
            st.caption(" · ".join(f"{humanize(k)} {v}" for k, v in sorted(job["progress"].items())))
        if job["state"] in BULK_UNFINISHED:
            if st.button("Cancel", key="exc_bulk_cancel"):
                try:
                    c.client.bulk_replay_cancel(int(job_id))
                except ApiError as exc:
                    show_error(exc, doing="cancel")
        elif st.session_state.get("exc_bulk_finished") != job_id:
            # Once: the queue and tiles around this fragment must show what the replays did.
            st.session_state["exc_bulk_finished"] = job_id
            data.clear_live()
            st.rerun(scope="app")

    progress()


def recent_bulk(c: Ctx) -> None:
    try:
        jobs = data.bulk_replays(c.api_url, c.token)
    except ApiError as exc:
        if not exc.unavailable:
            show_error(exc, doing="list bulk replays")
        return
    if not jobs:
        st.caption("No bulk replays yet.")
        return
    st.dataframe([{"ID": j["id"], "Name": j["name"], "State": humanize(j["state"]), "By": j["requested_by"],
                   "Reason": j["reason"], "Done": f"{j['done']} / {j['expected_count']}",
                   "Created": when(j["created_at"])} for j in jobs],
                 hide_index=True, key="exc_bulk_jobs")  # fmt: skip
