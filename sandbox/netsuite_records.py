"""NetSuite REST record bodies: validate what a caller sends, render what the ERP holds.

Field names follow Oracle's examples (customer, invoice, journalentry in
../shared/fixtures/erp/netsuite). Amounts are kept as decimal strings so the ledger never
drifts from what was sent by float rounding; they are rendered as JSON numbers, as NetSuite does.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

# The ERP keeps its own currency precision table, like the real one: it must not trust the caller.
# fmt: off
_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
    "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
OPEN = {"id": "A", "refName": "Open"}


class UserError(ValueError):
    """The request body is not a valid record; NetSuite's USER_ERROR."""


@dataclass(frozen=True, slots=True)
class Parsed:
    external_id: str
    # YYYY-MM, for list-by-period; None means "the month it was created".
    period: str | None
    body: dict[str, Any]


def places(currency: str) -> int:
    return 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2


def _reject_constant(name: str) -> Any:
    raise UserError(f"{name} is not a valid amount")


def load_body(raw: bytes) -> dict[str, Any]:
    try:
        # Decimal keeps 10.05 exact; floats would let the ledger drift from what was sent.
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UserError("the request body must be a JSON object")
    return body


def _str(obj: dict[str, Any], key: str, *, where: str = "", required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}{key} is required and must be a non-empty string")
    return value


def _req(obj: dict[str, Any], key: str, *, where: str = "") -> str:
    value = _str(obj, key, where=where)
    assert value is not None
    return value


def _ref(body: dict[str, Any], key: str, ref_key: str, *, required: bool = True) -> str | None:
    ref = body.get(key)
    if ref is None and not required:
        return None
    if not isinstance(ref, dict):
        raise UserError(f"{key} is required and must be an object with {ref_key}")
    return _str(ref, ref_key, where=f"{key}.")


def _currency(body: dict[str, Any], *, default: str | None = None) -> str:
    currency = _ref(body, "currency", "refName", required=default is None) or default
    assert currency is not None
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise UserError(f"currency.refName {currency!r} is not an ISO 4217 code")
    return currency


def _tran_date(value: Any, today: date) -> date:
    if value is None:
        return today
    if not isinstance(value, str):
        raise UserError("tranDate must be a YYYY-MM-DD string")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"tranDate {value!r} is not a YYYY-MM-DD date") from exc


def amount(value: Any, currency: str, where: str) -> str:
    """A JSON number as an exact decimal string, refused if finer than the currency allows."""
    # bool is an int subclass; JSON true must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise UserError(f"{where} must be a number")
    number = Decimal(value)
    digits = places(currency)
    try:
        exact = number == number.quantize(Decimal(1).scaleb(-digits))
    except InvalidOperation:
        exact = False
    if not exact:
        raise UserError(
            f"{where} {value} is not an amount with at most {digits} decimals in {currency}"
        )
    return str(number)


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key, {}).get("items") if isinstance(body.get(key), dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"{key}.items must be a non-empty list of lines")
    for index, line in enumerate(items):
        if not isinstance(line, dict):
            raise UserError(f"{key}.items[{index}] must be an object")
    return items


def _memo(body: dict[str, Any]) -> str | None:
    memo = body.get("memo")
    if memo is not None and not isinstance(memo, str):
        raise UserError("memo must be a string")
    return memo


def parse_invoice(body: dict[str, Any], today: date) -> Parsed:
    currency = _currency(body)
    tran_date = _tran_date(body.get("tranDate"), today)
    lines = []
    for index, line in enumerate(_items(body, "item")):
        description = line.get("description")
        if description is not None and not isinstance(description, str):
            raise UserError(f"item.items[{index}].description must be a string")
        where = f"item.items[{index}].amount"
        stored_line = {
            "amount": amount(line.get("amount"), currency, where),
            "description": description,
        }
        # How the line is booked, kept as given: item, revenue account and tax code references.
        for ref in ("item", "account", "taxCode"):
            if isinstance(line.get(ref), dict):
                stored_line[ref] = line[ref]
        lines.append(stored_line)
    stored: dict[str, Any] = {
        "externalId": _req(body, "externalId"),
        "entity": {"externalId": _ref(body, "entity", "externalId")},
        "currency": {"refName": currency},
        "tranDate": tran_date.isoformat(),
        "memo": _memo(body),
        "status": OPEN,
        "item": {"items": lines},
    }
    subsidiary = _ref(body, "subsidiary", "id", required=False)
    if subsidiary is not None:
        stored["subsidiary"] = {"id": subsidiary}
    return Parsed(stored["externalId"], tran_date.isoformat()[:7], stored)


def parse_customer(body: dict[str, Any], _today: date) -> Parsed:
    # Oracle's two examples spell it companyName and companyname; NetSuite field ids ignore case.
    company = body.get("companyName", body.get("companyname"))
    if not isinstance(company, str) or not company.strip():
        raise UserError("companyName is required and must be a non-empty string")
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise UserError("email must be an e-mail address")
    stored: dict[str, Any] = {
        "externalId": _req(body, "externalId"),
        "companyName": company,
        "entityId": body.get("entityId", body.get("entityid")) or company,
        "email": email,
        "currency": {"refName": _currency(body, default="USD")},
        "isInactive": bool(body.get("isInactive", False)),
    }
    subsidiary = _ref(body, "subsidiary", "id", required=False)
    if subsidiary is not None:
        stored["subsidiary"] = {"id": subsidiary}
    return Parsed(stored["externalId"], None, stored)


def parse_payment(body: dict[str, Any], today: date) -> Parsed:
    currency = _currency(body)
    tran_date = _tran_date(body.get("tranDate"), today)
    payment = amount(body.get("payment"), currency, "payment")
    applied: list[dict[str, Any]] = []
    for index, line in enumerate(_items(body, "apply")):
        doc = line.get("doc")
        if not isinstance(doc, dict):
            raise UserError(f"apply.items[{index}].doc must be an object with externalId")
        where = f"apply.items[{index}].amount"
        applied.append(
            {
                "doc": {"externalId": _req(doc, "externalId", where=f"apply.items[{index}].doc.")},
                "apply": True,
                "amount": amount(line.get("amount"), currency, where),
            }
        )
    if sum(Decimal(a["amount"]) for a in applied) > Decimal(payment):
        raise UserError("the applied amounts exceed the payment")
    stored: dict[str, Any] = {
        "externalId": _req(body, "externalId"),
        "customer": {"externalId": _ref(body, "customer", "externalId")},
        "currency": {"refName": currency},
        "tranDate": tran_date.isoformat(),
        "memo": _memo(body),
        "payment": payment,
        "status": {"id": "C", "refName": "Deposited"},
        "apply": {"items": applied},
    }
    return Parsed(stored["externalId"], tran_date.isoformat()[:7], stored)


def parse_journal_entry(body: dict[str, Any], today: date) -> Parsed:
    currency = _currency(body, default="USD")
    tran_date = _tran_date(body.get("tranDate"), today)
    lines, debits, credits = [], Decimal(0), Decimal(0)
    for index, line in enumerate(_items(body, "line")):
        account = _ref(line, "account", "id")
        sides = [side for side in ("debit", "credit") if line.get(side) is not None]
        if len(sides) != 1:
            raise UserError(f"line.items[{index}] must have exactly one of debit or credit")
        value = amount(line[sides[0]], currency, f"line.items[{index}].{sides[0]}")
        debits += Decimal(value) if sides[0] == "debit" else 0
        credits += Decimal(value) if sides[0] == "credit" else 0
        lines.append({"account": {"id": account}, sides[0]: value, "memo": line.get("memo")})
    if debits != credits:
        raise UserError(
            f"the journal entry is out of balance: debits {debits} != credits {credits}"
        )
    stored: dict[str, Any] = {
        "externalId": _req(body, "externalId"),
        "currency": {"refName": currency},
        "tranDate": tran_date.isoformat(),
        "memo": _memo(body),
        "line": {"items": lines},
    }
    subsidiary = _ref(body, "subsidiary", "id", required=False)
    if subsidiary is not None:
        stored["subsidiary"] = {"id": subsidiary}
    return Parsed(stored["externalId"], tran_date.isoformat()[:7], stored)


def _period(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 7:
        raise UserError(f"{where} must be a YYYY-MM period")
    try:
        date.fromisoformat(f"{value}-01")
    except ValueError as exc:
        raise UserError(f"{where} {value!r} is not a YYYY-MM period") from exc
    return value


def parse_revenue_plan(body: dict[str, Any], _today: date) -> Parsed:
    # No vendor example exists for this record; the shape is ours (docs/sandbox.md).
    currency = _currency(body)
    total = amount(body.get("amount"), currency, "amount")
    planned: list[dict[str, Any]] = []
    for index, line in enumerate(_items(body, "plannedRevenue")):
        where = f"plannedRevenue.items[{index}]"
        planned.append(
            {
                "postingPeriod": _period(line.get("postingPeriod"), f"{where}.postingPeriod"),
                "amount": amount(line.get("amount"), currency, f"{where}.amount"),
            }
        )
    if sum(Decimal(p["amount"]) for p in planned) != Decimal(total):
        raise UserError("plannedRevenue does not add up to amount")
    stored: dict[str, Any] = {
        "externalId": _req(body, "externalId"),
        "createdFrom": {"externalId": _ref(body, "createdFrom", "externalId")},
        "currency": {"refName": currency},
        "amount": total,
        "plannedRevenue": {"items": planned},
    }
    return Parsed(stored["externalId"], planned[0]["postingPeriod"], stored)


PARSERS: dict[str, Callable[[dict[str, Any], date], Parsed]] = {
    "customer": parse_customer,
    "invoice": parse_invoice,
    "customerpayment": parse_payment,
    "journalentry": parse_journal_entry,
    "revenueplan": parse_revenue_plan,
}


def total(record_type: str, body: dict[str, Any]) -> Decimal | None:
    """The record's money total, as the ledger reports it."""
    if record_type == "invoice":
        return sum((Decimal(i["amount"]) for i in body["item"]["items"]), Decimal(0))
    if record_type == "customerpayment":
        return Decimal(body["payment"])
    if record_type == "journalentry":
        return sum((Decimal(i.get("debit") or 0) for i in body["line"]["items"]), Decimal(0))
    if record_type == "revenueplan":
        return Decimal(body["amount"])
    return None


_AMOUNT_KEYS = frozenset({"amount", "payment", "debit", "credit"})


def render(value: Any) -> Any:
    """Stored body -> NetSuite JSON: decimal strings under amount keys become numbers."""
    if isinstance(value, dict):
        return {
            k: float(Decimal(v)) if k in _AMOUNT_KEYS and isinstance(v, str) else render(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render(v) for v in value]
    return value
