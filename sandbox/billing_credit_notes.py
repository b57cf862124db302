"""Stripe credit notes: issue one against a finalized invoice, as POST /v1/credit_notes does.

A credit note first lowers the invoice's amount_remaining (its `pre_payment_amount`); an open
invoice credited down to nothing becomes paid with nothing collected. What exceeds the
remaining amount (`post_payment_amount`) must be accounted for as refund, customer balance
credit or out-of-band credit, and their sum must equal it, as Stripe insists. The shape
follows Stripe's credit_note object (see the fixture in tests/fixtures/stripe/objects).
"""

from typing import Any

from sandbox import billing_objects as obj
from sandbox.billing_invoices import InvoiceLifecycle
from sandbox.billing_objects import InvalidRequest

_REASONS = frozenset({"duplicate", "fraudulent", "order_change", "product_unsatisfactory"})
_SETTLEMENTS = ("refund_amount", "credit_amount", "out_of_band_amount")


def _lines(params: dict[str, Any], currency: str) -> tuple[int, list[dict[str, Any]]]:
    """The credited amount and its lines: `amount`, or `lines` of custom or invoice lines."""
    raw = params.get("lines")
    if raw is None:
        amount = obj.integer(params, "amount", low=1)
        line = {"type": "custom_line_item", "amount": amount, "description": "Credit"}
        return amount, [_line(line, amount, currency)]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("Invalid array", param="lines")
    lines = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest("Invalid hash", param=f"lines[{n}]")
        if item.get("type") == "custom_line_item":
            quantity = obj.integer(item, "quantity", default=1, low=1)
            amount = obj.integer(item, "unit_amount", low=0) * quantity
        elif item.get("type") == "invoice_line_item":
            obj.required(item, "invoice_line_item")
            amount = obj.integer(item, "amount", low=0)
        else:
            raise InvalidRequest(
                "lines[].type must be custom_line_item or invoice_line_item",
                param=f"lines[{n}][type]",
            )
        lines.append(_line(item, amount, currency))
    total = sum(line["amount"] for line in lines)
    if "amount" in params and obj.integer(params, "amount", low=0) != total:
        raise InvalidRequest("amount must equal the sum of the lines' amounts", param="amount")
    if total <= 0:
        raise InvalidRequest("The credit note total must be positive", param="lines")
    return total, lines


def _line(item: dict[str, Any], amount: int, currency: str) -> dict[str, Any]:
    return {
        "id": obj.new_id("cnli"),
        "object": "credit_note_line_item",
        "amount": amount,
        "currency": currency,
        "description": item.get("description"),
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": item.get("invoice_line_item"),
        "livemode": False,
        "quantity": int(item.get("quantity") or 1),
        "tax_rates": [],
        "taxes": None,
        "type": item.get("type", "custom_line_item"),
        "unit_amount": item.get("unit_amount"),
        "unit_amount_decimal": None
        if item.get("unit_amount") is None
        else str(item["unit_amount"]),
        "pretax_credit_amounts": [],
        "metadata": None,
    }


class CreditNotes(InvoiceLifecycle):
    def issue_credit_note(self, params: dict[str, Any]) -> dict[str, Any]:
        return _issue(self, params)

    def close_by_credit(self, inv: dict[str, Any]) -> None:
        # Stripe closes an open invoice that credit notes cover in full: paid, nothing taken.
        self._mark_paid(inv)
        self._flush(inv, emit=True)


def _issue(billing: CreditNotes, params: dict[str, Any]) -> dict[str, Any]:
    inv = billing.load("invoice", obj.required(params, "invoice"), param="invoice")
    if inv["status"] not in {"open", "paid"}:
        raise InvalidRequest(
            f"Invoice is {inv['status']}; credit notes can only be issued for open or paid "
            "invoices",
            param="invoice",
        )
    amount, lines = _lines(params, inv["currency"])
    credited = inv.get("pre_payment_credit_notes_amount", 0) + inv.get(
        "post_payment_credit_notes_amount", 0
    )
    if credited + amount > inv["total"]:
        raise InvalidRequest(
            f"The credit note amount ({amount}) exceeds what is left to credit on the invoice "
            f"({inv['total'] - credited})",
            param="amount",
        )
    reason = params.get("reason")
    if reason is not None and reason not in _REASONS:
        raise InvalidRequest(f"Invalid reason: must be one of {sorted(_REASONS)}", param="reason")
    pre = min(amount, inv["amount_remaining"]) if inv["status"] == "open" else 0
    post = amount - pre
    settled = {k: obj.integer(params, k, default=0) for k in _SETTLEMENTS}
    if post and sum(settled.values()) != post:
        raise InvalidRequest(
            f"The sum of credit amount, refund amount and out of band amount "
            f"({sum(settled.values())}) must equal the post-payment amount ({post})",
            param="out_of_band_amount",
        )
    now = billing.now()
    sequence = 1 + sum(
        1
        for r in billing.store.select("credit_note", limit=10_000_000)
        if r.body["invoice"] == inv["id"]
    )
    note = {
        "id": obj.new_id("cn"),
        "object": "credit_note",
        "amount": amount,
        "amount_shipping": 0,
        "created": now,
        "currency": inv["currency"],
        "customer": inv["customer"],
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": now,
        "invoice": inv["id"],
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "url": "",
        },
        "livemode": False,
        "memo": params.get("memo"),
        "metadata": obj.metadata(params),
        "number": f"{inv['number']}-CN-{sequence:02d}",
        "out_of_band_amount": settled["out_of_band_amount"] or None,
        "pdf": None,
        "post_payment_amount": post,
        "pre_payment_amount": pre,
        "pretax_credit_amounts": [],
        "reason": reason,
        "refunds": [],
        "shipping_cost": None,
        "status": "issued",
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "total": amount,
        "total_excluding_tax": amount,
        "total_taxes": [],
        "type": "mixed" if pre and post else "pre_payment" if pre else "post_payment",
        "voided_at": None,
    }
    note["lines"]["url"] = f"/v1/credit_notes/{note['id']}/lines"
    inv["pre_payment_credit_notes_amount"] = inv.get("pre_payment_credit_notes_amount", 0) + pre
    inv["post_payment_credit_notes_amount"] = inv.get("post_payment_credit_notes_amount", 0) + post
    billing.save(note)
    billing.emit("credit_note.created", note)
    if pre:
        inv["amount_due"] -= pre
        inv["amount_remaining"] -= pre
        if inv["amount_remaining"] == 0:
            billing.close_by_credit(inv)
            return note
    billing.save(inv)
    billing.emit("invoice.updated", inv)
    return note
