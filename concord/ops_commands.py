"""Operator commands over the API: replay, resolve, exceptions, status, and keys with a key.

Each one is a client of the v1 API, so it is checked against the key's role and audited like
any other call. Tables go to stdout; prompts, progress and errors to stderr. An API error is
printed as `HTTP <status> <code>: <message>` and the command exits 1 (2 when the API cannot be
reached or the command line is incomplete).
"""

import os
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer

from concord.operator import age, api_session, api_url_of, cell, checked, error_code, table
from lineage.enums import Role, System, TxState

ApiUrlOpt = Annotated[str | None, typer.Option(help="Default: CONCORD_API_URL.")]
KeyOpt = Annotated[str | None, typer.Option(help="An API key; default: CONCORD_API_KEY.")]

FINISHED_BULK_STATES = ("completed", "cancelled")
POLL_S = 0.5
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_MAX_EXCEPTION_PAGES = 20


def register(app: typer.Typer) -> None:
    """Add replay, resolve, exceptions and status to the `concord` app."""
    app.command()(replay)
    app.command()(resolve)
    app.command()(exceptions)
    app.command()(status)


def _when(value: str | None, option: str) -> str | None:
    """An ISO 8601 time, or an age like 30m, 6h, 2d meaning that long ago."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = relative.groups()
        return (datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})).isoformat()
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            "an ISO 8601 time (2026-11-20T08:00:00Z) or an age (30m, 6h, 2d)", param_hint=option
        ) from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def _money(amount_minor: Any, currency: Any) -> str:
    return "-" if amount_minor is None else f"{amount_minor} {currency or ''}".strip()


# --- replay -----------------------------------------------------------------------------------


def replay(
    correlation_id: Annotated[
        str | None,
        typer.Argument(help="Replay this one transaction; leave out to replay by filter."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why; kept in the audit log. Needed unless --dry-run.")
    ] = None,
    from_step: Annotated[
        str | None, typer.Option(help="One transaction: start at this step.")
    ] = None,
    state: Annotated[
        list[TxState] | None, typer.Option(help="Filter: transaction state (repeatable).")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Filter: workflow.")] = None,
    target: Annotated[
        System | None, typer.Option(help="Filter: a target system of its steps.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Filter: received since (ISO time, or an age: 6h, 2d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Filter: received until (same forms).")] = None,
    business_key: Annotated[
        str | None, typer.Option(help="Filter: customer, subscription or invoice ID.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the bulk replay job.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show how many would be replayed, and some.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api_url: ApiUrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Replay one transaction, or every settled one a filter matches (bulk, with a dry run)."""
    flt: dict[str, Any] = {
        "state": [s.value for s in state or []],
        "workflow": workflow,
        "target": target.value if target else None,
        "since": _when(since, "--since"),
        "until": _when(until, "--until"),
        "business_key": business_key,
    }
    flt = {k: v for k, v in flt.items() if v}
    if correlation_id is not None:
        if flt or dry_run or name:
            typer.echo("a correlation ID or a filter, not both", err=True)
            raise typer.Exit(2)
        if not reason:
            typer.echo("--reason is needed", err=True)
            raise typer.Exit(2)
        _replay_one(correlation_id, reason, from_step, api_url, key)
        return
    if not flt:
        typer.echo(
            "give a correlation ID, or a filter (--state, --workflow, --target, --since, ...)",
            err=True,
        )
        raise typer.Exit(2)
    if from_step is not None:
        typer.echo("--from-step applies to one transaction only", err=True)
        raise typer.Exit(2)
    if not dry_run and not reason:
        typer.echo("--reason is needed (or --dry-run)", err=True)
        raise typer.Exit(2)
    _replay_bulk(flt, reason=reason, name=name, dry_run=dry_run, yes=yes, api_url=api_url, key=key)


def _replay_one(
    correlation_id: str, reason: str, from_step: str | None, api_url: str | None, key: str | None
) -> None:
    body: dict[str, Any] = {"reason": reason}
    if from_step is not None:
        body["from_step"] = from_step
    with api_session(api_url, key) as client:
        result = checked(client.post(f"/v1/transactions/{correlation_id}/replay", json=body))
    typer.echo(
        table(
            [
                [
                    result["correlation_id"],
                    str(result["run_number"]),
                    result["state"],
                    cell(result.get("from_step")),
                    "yes" if result.get("target_holds_record") else "no",
                ]
            ],
            ["correlation id", "run", "state", "from step", "target holds record"],
        )
    )
    for record in result.get("target_records") or []:
        typer.echo(
            f"already held: {record['system']} {record['object_type']} {record['external_id']}"
            " (the run looks it up instead of posting it again)"
        )


def _sample_rows(sample: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            t["correlation_id"],
            cell(t.get("workflow")),
            t["state"],
            cell(t.get("invoice_id") or t.get("subscription_id") or t.get("customer_id")),
            _money(t.get("amount_minor"), t.get("currency")),
            cell(t.get("received_at", "")[:19].replace("T", " ")),
        ]
        for t in sample
    ]


def _replay_bulk(
    flt: dict[str, Any],
    *,
    reason: str | None,
    name: str | None,
    dry_run: bool,
    yes: bool,
    api_url: str | None,
    key: str | None,
) -> None:
    with api_session(api_url, key) as client:
        preview = checked(client.post("/v1/replays", json={"filter": flt, "dry_run": True}))
        # Pinned by the dry run (updated_until): transactions that fail while the operator
        # confirms stay out of the set, so its count still matches when the job starts.
        flt = preview["filter"]
        count = int(preview["count"])
        typer.echo(
            f"{count} {'transaction matches' if count == 1 else 'transactions match'} "
            f"({preview['already_held']} already held by their target; "
            f"at most {preview['max_allowed']} per bulk replay)"
        )
        if preview["sample"]:
            typer.echo(
                table(
                    _sample_rows(preview["sample"]),
                    ["correlation id", "workflow", "state", "business key", "amount", "received"],
                )
            )
            if count > len(preview["sample"]):
                typer.echo(f"… and {count - len(preview['sample'])} more")
        if dry_run:
            return
        if count == 0:
            typer.echo("nothing to replay", err=True)
            return
        if count > int(preview["max_allowed"]):
            typer.echo(
                "too many for one bulk replay: narrow the filter (--since/--until)", err=True
            )
            raise typer.Exit(1)
        if not yes:
            typer.confirm(f"Replay these {count} transactions?", abort=True, err=True)
        body: dict[str, Any] = {"filter": flt, "expected_count": count, "reason": reason}
        if name:
            body["name"] = name
        job = checked(client.post("/v1/replays", json=body))
        typer.echo(f"bulk replay {job['id']} ({job['name']}) started", err=True)
        job = _follow(client, job)
    _print_outcomes(job)
    if job["state"] != "completed":
        typer.echo(f"bulk replay {job['id']} was {job['state']}", err=True)
        raise typer.Exit(1)


def _follow(client: httpx.Client, job: dict[str, Any]) -> Any:
    """Poll the job until it is finished, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bulk_id = job["id"]
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task(f"bulk replay {bulk_id}", total=job["expected_count"])
            while True:
                job = checked(client.get(f"/v1/replays/{bulk_id}"))
                progress.update(task, completed=job["done"])
                if job["state"] in FINISHED_BULK_STATES:
                    return job
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        typer.echo(
            f"\nbulk replay {bulk_id} goes on in the API: follow it with GET /v1/replays/"
            f"{bulk_id}, stop it with POST /v1/replays/{bulk_id}/cancel",
            err=True,
        )
        raise typer.Exit(130) from None


def _print_outcomes(job: dict[str, Any]) -> None:
    items = job.get("items") or []
    typer.echo(
        table(
            [
                [
                    i["correlation_id"],
                    i["outcome"],
                    cell(i.get("run_number")),
                    cell(i.get("message")),
                ]
                for i in items
            ],
            ["correlation id", "outcome", "run", "message"],
        )
    )
    counts = ", ".join(f"{outcome} {n}" for outcome, n in sorted(job["progress"].items()))
    typer.echo(f"bulk replay {job['id']} {job['state']}: {counts or 'nothing done'}")


# --- resolve ----------------------------------------------------------------------------------


def resolve(
    correlation_id: Annotated[str, typer.Argument(help="The transaction to close by hand.")],
    resolution: Annotated[str, typer.Option(help="What was done, e.g. posted_by_hand.")],
    note: Annotated[str, typer.Option(help="Why; kept in the audit log.")],
    api_url: ApiUrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Close a settled transaction by hand (manually_resolved); its open exceptions close."""
    with api_session(api_url, key) as client:
        result = checked(
            client.post(
                f"/v1/transactions/{correlation_id}/resolve",
                json={"resolution": resolution, "note": note},
            )
        )
    closed = ", ".join(str(i) for i in result.get("closed_exceptions") or []) or "-"
    typer.echo(
        table(
            [
                [
                    result["correlation_id"],
                    result["state"],
                    result["resolution"],
                    result["resolved_by"],
                    closed,
                ]
            ],
            ["correlation id", "state", "resolution", "resolved by", "closed exceptions"],
        )
    )


# --- exceptions -------------------------------------------------------------------------------


def exceptions(
    classification: Annotated[
        str | None, typer.Option(help="e.g. retry_budget_exhausted, validation, mapping_missing.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow's.")] = None,
    unassigned: Annotated[bool, typer.Option("--unassigned", help="Only unowned.")] = False,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="The resolved ones instead of the open queue.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    api_url: ApiUrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """The exception queue, oldest first: classification, age, owner, suggested action."""
    params: dict[str, Any] = {
        "status": "resolved" if resolved else "open",
        "classification": classification,
        "owner": owner,
        "workflow": workflow,
        "unassigned": "true" if unassigned else None,
        "limit": min(limit, 500),
    }
    params = {k: v for k, v in params.items() if v is not None}
    items: list[dict[str, Any]] = []
    with api_session(api_url, key) as client:
        cursor = None
        while len(items) < limit:
            query = {**params, "cursor": cursor} if cursor else params
            page = checked(client.get("/v1/exceptions", params=query))
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    items = items[:limit]
    if not items:
        typer.echo(f"no {params['status']} exceptions")
        return
    typer.echo(
        table(
            [
                [
                    str(i["id"]),
                    i["correlation_id"],
                    cell(i.get("workflow")),
                    i["classification"],
                    age(i.get("age_s")),
                    cell(i.get("owner")),
                    cell(i.get("suggested_action")),
                ]
                for i in items
            ],
            [
                "id",
                "correlation id",
                "workflow",
                "classification",
                "age",
                "owner",
                "suggested action",
            ],
        )
    )
    more = " (more: raise --limit)" if cursor and len(items) >= limit else ""
    typer.echo(f"{len(items)} {params['status']} exception{'s' if len(items) != 1 else ''}{more}")


# --- status -----------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _secs(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _sla_rows(groups: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            g["group"],
            _secs(g.get("sla_target_s")),
            str(g["total"]),
            str(g["posted"]),
            str(g["met"]),
            str(g["breached"]),
            str(g["overdue"]),
            str(g["open_exceptions"]),
            _pct(g.get("attainment_pct")),
            _secs(g.get("p50_s")),
            _secs(g.get("p95_s")),
            ", ".join(f"{v} {c}" for c, v in sorted((g.get("money_at_risk") or {}).items())) or "-",
        ]
        for g in groups
    ]


def _operations_lines(client: httpx.Client) -> list[str]:
    """Queue, workers and sweeper from GET /v1/operations, if this API has it."""
    response = client.get("/v1/operations")
    if response.status_code == 404:
        return []
    if response.status_code == 503:
        return [f"queue: unknown ({error_code(response) or 'unavailable'})"]
    ops = checked(response)
    queue = ops["queue"]
    lines = [f"queue: {queue['ready']} ready, {queue['deferred']} deferred"]
    reported = ops["workers"]["reported"]
    lines.append(
        f"workers: last heartbeat {age(reported[0].get('age_s'))} ago"
        if reported
        else f"workers: {ops['workers'].get('note') or 'none reported'}"
    )
    sweeper = ops.get("sweeper")
    lines.append(
        f"sweeper: last run {age(sweeper['age_s'])} ago, queued {sweeper['queued']}"
        if sweeper
        else f"sweeper: {ops.get('sweeper_note') or 'no run recorded'}"
    )
    for pressure in ops.get("by_target") or []:
        lines.append(
            f"  {pressure['target_system']}: {pressure['transactions']} {pressure['state']}"
        )
    return lines


def _open_exceptions(client: httpx.Client) -> str:
    count, cursor = 0, None
    for _ in range(_MAX_EXCEPTION_PAGES):
        params: dict[str, Any] = {"status": "open", "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = checked(client.get("/v1/exceptions", params=params))
        count += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return str(count)
    return f"{count}+"


def status(
    window: Annotated[str, typer.Option(help="SLA window, e.g. 1h, 24h, 7d.")] = "24h",
    api_url: ApiUrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """API readiness, SLA per workflow, the queue and workers, and the open exceptions."""
    with api_session(api_url, key) as client:
        ready = client.get("/readyz")
        checks = ready.json().get("checks", {}) if ready.status_code in (200, 503) else {}
        detail = ", ".join(f"{k} {v}" for k, v in sorted(checks.items()))
        typer.echo(
            f"API {api_url_of(api_url)}: "
            f"{'ready' if ready.status_code == 200 else f'NOT READY (HTTP {ready.status_code})'}"
            f"{f' ({detail})' if detail else ''}"
        )
        summary = checked(client.get("/v1/sla/summary", params={"window": window}))
        operations = _operations_lines(client)
        open_count = _open_exceptions(client)
    typer.echo(f"\nSLA, last {window}, by workflow:")
    rows = _sla_rows(summary["groups"])
    typer.echo(
        table(
            rows,
            [
                "workflow",
                "target",
                "total",
                "posted",
                "met",
                "breached",
                "overdue",
                "open exc",
                "attainment",
                "p50",
                "p95",
                "money at risk",
            ],
        )
        if rows
        else "no transactions in the window"
    )
    if operations:
        typer.echo("")
        for line in operations:
            typer.echo(line)
    typer.echo(f"\nopen exceptions: {open_count}")
    if ready.status_code != 200:
        raise typer.Exit(1)


# --- keys through the API -----------------------------------------------------------------------


def keys_through_api(api_url: str | None, key: str | None) -> bool:
    """A key on the command line, or both CONCORD_API_KEY and an API URL: use the API.

    Without one, `concord keys` works on the database directly (unaudited): the very first
    admin key has to come from somewhere.
    """
    if key:
        return True
    has_url = bool(api_url or os.environ.get("CONCORD_API_URL"))
    return has_url and bool(os.environ.get("CONCORD_API_KEY"))


def keys_create(role: Role, name: str, api_url: str | None, key: str | None) -> None:
    with api_session(api_url, key) as client:
        created = checked(client.post("/v1/keys", json={"name": name, "role": role.value}))
    typer.echo(created["key"])
    typer.echo(f"key {created['id']} ({created['role']}) for {created['name']}", err=True)


def keys_list(api_url: str | None, key: str | None) -> None:
    with api_session(api_url, key) as client:
        rows = checked(client.get("/v1/keys"))
    typer.echo("id\tname\trole\tkey\tcreated\tlast used\trevoked")
    for k in rows:
        created, used, revoked = (
            (k.get(f) or "-")[:19].replace("T", " ")
            for f in ("created_at", "last_used_at", "revoked_at")
        )
        typer.echo(
            f"{k['id']}\t{k['name']}\t{k['role']}\tck_{k['prefix']}_…\t{created[:16]}\t"
            f"{used}\t{revoked}"
        )


def keys_revoke(key_id: int, api_url: str | None, key: str | None) -> None:
    with api_session(api_url, key) as client:
        checked(client.post(f"/v1/keys/{key_id}/revoke"))
    typer.echo(f"revoked key {key_id}", err=True)
