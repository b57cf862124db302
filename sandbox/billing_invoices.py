"""The invoice lifecycle: draft, open, paid, void, uncollectible; payments that succeed or fail;
invoice lines from subscription items, metered usage and pending prorations."""

from typing import Any

from sandbox import billing_objects as obj
from sandbox.billing_core import BillingCore
from sandbox.billing_objects import InvalidRequest

MAX_PAYMENT_ATTEMPTS = 4
RETRY_AFTER_FAILURE_S = 3 * 86400


class InvoiceLifecycle(BillingCore):
    def _usage(self, item_id: str, period: tuple[int, int]) -> int:
        total = 0
        for stored in self.store.select("usage_record"):
            record = stored.body
            if (
                record["subscription_item"] == item_id
                and period[0] <= record["timestamp"] < period[1]
            ):
                total = (
                    record["quantity"] if record["action"] == "set" else total + record["quantity"]
                )
        return total

    def _invoice_item(
        self, sub: dict[str, Any], amount: int, description: str, period: tuple[int, int]
    ) -> dict[str, Any]:
        item = {
            "id": obj.new_id("ii"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": sub["currency"],
            "customer": sub["customer"],
            "date": self.now(),
            "created": self.now(),
            "description": description,
            "invoice": None,
            "livemode": False,
            "metadata": {},
            "period": {"start": period[0], "end": period[1]},
            "proration": True,
            "quantity": 1,
            "subscription": sub["id"],
        }
        self.save(item)
        self.emit("invoiceitem.created", item)
        return item

    def _pending_lines(self, sub: dict[str, Any]) -> list[dict[str, Any]]:
        lines = []
        for stored in self.store.select("invoiceitem"):
            item = stored.body
            if item["subscription"] == sub["id"] and item["invoice"] is None:
                lines.append(
                    obj.line_item(
                        amount=item["amount"],
                        currency=item["currency"],
                        description=item["description"],
                        period=(item["period"]["start"], item["period"]["end"]),
                        quantity=1,
                        subscription_id=sub["id"],
                        proration=item["proration"],
                        invoice_item=item["id"],
                    )
                )
        return lines

    def _period_lines(
        self, sub: dict[str, Any], period: tuple[int, int], usage_period: tuple[int, int] | None
    ) -> list[dict[str, Any]]:
        lines = []
        for item in sub["items"]["data"]:
            price_obj = item["price"]
            metered = price_obj["recurring"]["usage_type"] == "metered"
            if metered and usage_period is None:
                continue  # usage is billed in arrears, at the end of the period
            quantity = (
                self._usage(item["id"], usage_period)
                if metered and usage_period
                else item["quantity"]
            )
            line_period = usage_period if metered and usage_period else period
            lines.append(
                obj.line_item(
                    amount=price_obj["unit_amount"] * quantity,
                    currency=price_obj["currency"],
                    description=f"{quantity} × {price_obj.get('nickname') or price_obj['product']}",
                    period=line_period,
                    quantity=quantity,
                    subscription_id=sub["id"],
                    item=item,
                )
            )
        return lines + self._pending_lines(sub)

    def _invoice(
        self,
        cust: dict[str, Any],
        sub: dict[str, Any],
        lines: list[dict[str, Any]],
        period: tuple[int, int],
        reason: str,
    ) -> dict[str, Any]:
        inv = obj.invoice(
            cust,
            currency=sub["currency"],
            lines=lines,
            period=period,
            billing_reason=reason,
            subscription_id=sub["id"],
            now=self.now(),
        )
        self.save(cust)
        for line in lines:
            item_id = (line["parent"].get("invoice_item_details") or {}).get("invoice_item")
            if item_id:
                self.store.update(
                    "invoiceitem",
                    item_id,
                    body={**self.load("invoiceitem", item_id), "invoice": inv["id"]},
                )
        self.save(inv)
        inv["_events"] = ["invoice.created"]
        self.finalize(inv, emit=False)
        self.pay(inv, emit=False)
        return inv

    def _announce_invoice(self, inv: dict[str, Any]) -> None:
        self._flush(inv, emit=True)

    def create_draft(self, params: dict[str, Any]) -> dict[str, Any]:
        cust = self.load("customer", obj.required(params, "customer"), param="customer")
        now = self.now()
        currency = obj.required(params, "currency").lower() if params.get("currency") else "usd"
        inv = obj.invoice(
            cust,
            currency=currency,
            lines=[],
            period=(now, now),
            billing_reason="manual",
            subscription_id=None,
            now=now,
        )
        inv["metadata"] = obj.metadata(params)
        self.save(cust)
        self.save(inv)
        self.emit("invoice.created", inv)
        return inv

    def finalize(self, inv: dict[str, Any], *, emit: bool = True) -> dict[str, Any]:
        if inv["status"] != "draft":
            raise InvalidRequest(f"Invoice is {inv['status']}; only a draft can be finalized")
        inv["status"] = "open"
        inv["status_transitions"]["finalized_at"] = self.now()
        inv["effective_at"] = self.now()
        events = inv.setdefault("_events", [])
        events.append("invoice.finalized")
        if inv["amount_due"] == 0:
            self._mark_paid(inv)
        return self._flush(inv, emit)

    def pay(
        self, inv: dict[str, Any], *, emit: bool = True, paid_out_of_band: bool = False
    ) -> dict[str, Any]:
        if inv["status"] == "paid" and "_events" in inv:
            return self._flush(inv, emit)
        if inv["status"] != "open":
            raise InvalidRequest(f"Invoice is {inv['status']}; only an open invoice can be paid")
        events = inv.setdefault("_events", [])
        if paid_out_of_band:
            self._mark_paid(inv)
            return self._flush(inv, emit)
        cust = self.load("customer", inv["customer"])
        method = cust["invoice_settings"]["default_payment_method"]
        ch = obj.charge(inv, method, self.now())
        self.save(ch)
        inv.update(attempted=True, attempt_count=inv["attempt_count"] + 1)
        if ch["status"] == "succeeded":
            events.append("charge.succeeded")
            self._mark_paid(inv)
        else:
            events += ["charge.failed", "invoice.payment_failed"]
            inv["last_finalization_error"] = {
                "message": ch["failure_message"],
                "code": "card_declined",
            }
            more = inv["attempt_count"] < MAX_PAYMENT_ATTEMPTS
            inv["next_payment_attempt"] = self.now() + RETRY_AFTER_FAILURE_S if more else None
            self._set_subscription_status(inv, "past_due")
        inv["_charge"] = ch
        return self._flush(inv, emit)

    def _mark_paid(self, inv: dict[str, Any]) -> None:
        inv.update(
            status="paid",
            amount_paid=inv["amount_due"],
            amount_remaining=0,
            next_payment_attempt=None,
        )
        inv["status_transitions"]["paid_at"] = self.now()
        inv.setdefault("_events", []).extend(["invoice.paid", "invoice.payment_succeeded"])
        self._set_subscription_status(inv, "active")

    def _set_subscription_status(self, inv: dict[str, Any], status: str) -> None:
        sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        found = self.store.get("subscription", sub_id) if sub_id else None
        if found is not None and found.body["status"] not in {"canceled", status}:
            previous = {"status": found.body["status"]}
            found.body["status"] = status
            self.save(found.body)
            self.emit("customer.subscription.updated", found.body, previous)

    def _flush(self, inv: dict[str, Any], emit: bool) -> dict[str, Any]:
        if not emit:
            return inv
        charge_obj = inv.pop("_charge", None)
        for event_type in inv.pop("_events", []):
            self.emit(event_type, charge_obj if event_type.startswith("charge.") else inv)
        self.save(inv)
        return inv

    def close(self, inv: dict[str, Any], status: str) -> dict[str, Any]:
        """Void or mark uncollectible an open invoice."""
        if inv["status"] != "open":
            raise InvalidRequest(
                f"Invoice is {inv['status']}; only an open invoice can become {status}"
            )
        inv["status"] = status
        key = "voided_at" if status == "void" else "marked_uncollectible_at"
        inv["status_transitions"][key] = self.now()
        inv["next_payment_attempt"] = None
        self.save(inv)
        self.emit("invoice.voided" if status == "void" else "invoice.marked_uncollectible", inv)
        return inv
