"""Numbers with their units: money in minor units with its currency, durations, ages, states."""

from datetime import UTC, datetime
from typing import Any

# ISO 4217 exponents that are not 2; everything else has two decimals.
_EXPONENT = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip
_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

STATE_COLORS = {
    "posted": "#2e9d5b",
    "succeeded": "#2e9d5b",
    "manually_resolved": "#5b8def",
    "resolved": "#5b8def",
    "auto_resolved": "#5b8def",
    "received": "#9aa5b1",
    "pending": "#f0b429",
    "running": "#3b82f6",
    "retrying": "#f59e0b",
    "failed_retryable": "#f59e0b",
    "exception": "#d64545",
    "failed_terminal": "#d64545",
    "failed": "#d64545",
    "open": "#d64545",
    "reversed": "#8b5cf6",
    "compensated": "#8b5cf6",
    "ignored": "#9aa5b1",
    "skipped": "#9aa5b1",
    "cancelled": "#9aa5b1",
}
BADGE_COLORS = {
    "#2e9d5b": "green",
    "#5b8def": "blue",
    "#9aa5b1": "gray",
    "#f0b429": "orange",
    "#3b82f6": "blue",
    "#f59e0b": "orange",
    "#d64545": "red",
    "#8b5cf6": "violet",
}


def money(amount_minor: int | None, currency: str | None) -> str:
    """1234, "USD" -> "$12.34"; unknown amount -> "—"."""
    if amount_minor is None:
        return "—"
    code = (currency or "").upper()
    exp = _EXPONENT.get(code, 2)
    value = amount_minor / (10**exp)
    text = f"{value:,.{exp}f}"
    symbol = _SYMBOL.get(code)
    if symbol:
        return f"-{symbol}{text[1:]}" if value < 0 else f"{symbol}{text}"
    return f"{text} {code}".strip()


def money_map(amounts: dict[str, int] | None) -> str:
    """{"USD": 1000, "EUR": 50} -> "$10.00 · €0.50"; nothing -> "none"."""
    if not amounts:
        return "none"
    return " · ".join(money(v, k) for k, v in sorted(amounts.items()) if v) or "none"


def add_money(total: dict[str, int], more: dict[str, int] | None) -> dict[str, int]:
    out = dict(total)
    for code, value in (more or {}).items():
        out[code] = out.get(code, 0) + int(value)
    return out


def duration(seconds: float | None) -> str:
    """Seconds -> "850 ms", "12.3 s", "4 min 5 s", "3 h 2 min", "2 d 4 h"; a zero second part
    is left out ("10 s", "5 min", "1 h"), as targets are mostly round."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return _two(minutes, "min", secs, "s")
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _two(hours, "h", minutes, "min")
    days, hours = divmod(hours, 24)
    return _two(days, "d", hours, "h")


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit}" + (f" {small} {small_unit}" if small else "")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """An API timestamp as "2026-05-01 12:03:04 UTC"."""
    parsed = parse_time(value)
    return "—" if parsed is None else parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: Any, *, now: datetime | None = None) -> str:
    parsed = parse_time(value)
    if parsed is None:
        return "—"
    return f"{duration(((now or datetime.now(UTC)) - parsed).total_seconds())} ago"


def state_color(state: str | None) -> str:
    return STATE_COLORS.get(state or "", "#9aa5b1")


def badge_color(state: str | None) -> str:
    return BADGE_COLORS.get(state_color(state), "gray")


# Words people write in capitals: target systems ("erp" -> "ERP") and the like.
ACRONYMS = {"crm": "CRM", "erp": "ERP", "sla": "SLA", "api": "API", "id": "ID", "csv": "CSV"}


def humanize(name: str | None) -> str:
    """ "retry_budget_exhausted" -> "Retry budget exhausted", "erp.post_invoice" -> "ERP · post
    invoice"."""
    if not name:
        return "—"
    words = name.replace("_", " ").replace(".", " · ").split(" ")
    text = " ".join(ACRONYMS.get(word.lower(), word) for word in words)
    return text[:1].upper() + text[1:]


def target_label(group: object) -> str:
    """A target system's name; the API groups transactions no step has reached yet as "none"
    (waiting for an earlier event of their subscription, or not picked up yet)."""
    return "No step yet" if group in (None, "none") else humanize(str(group))


# reconciliation/runner.py's stages, as a reader would say them.
RUN_STAGES = {
    "snapshot:lineage": "reading Concord's postings",
    "snapshot:http": "reading billing, the ERP and the CRM",
    "snapshot:files": "reading the snapshot files",
    "write_snapshots": "keeping the snapshots",
    "compare": "comparing",
    "record": "recording the differences",
}


def finished_message(run: dict[str, Any]) -> dict[str, Any]:
    """What a finished run came to, in one line; ok is False for a failed run."""
    head = f"Run {run.get('id', '')} for {run.get('period', '')}: {humanize(run.get('state'))}"
    if run.get("state") == "succeeded":
        found, new = run.get("found_count", 0), run.get("new_count", 0)
        return {"ok": True, "message": f"{head}, {found} found, {new} new."}
    return {"ok": False, "message": f"{head}. {run.get('error') or ''}".strip()}
