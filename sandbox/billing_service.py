"""Billing behaviour: customers, the catalogue, subscriptions with prorations, and renewals.

Objects live in the system's RecordStore as Stripe JSON. Time is the sandbox clock (wall time
plus an offset that /_admin/clock advances), so a month of billing can pass in a test.
"""

from typing import Any

from sandbox import billing_objects as obj
from sandbox.billing_credit_notes import CreditNotes
from sandbox.billing_objects import InvalidRequest


class Billing(CreditNotes):
    def create(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        builders = {"customer": obj.customer, "product": obj.product, "price": obj.price}
        body = builders[kind](params, self.now())
        if kind == "price":
            self.load("product", body["product"], param="product")
        eid = body["metadata"].get("external_id") if kind == "customer" else None
        if eid and self.store.find("customer", eid) is not None:
            # Stripe has no external IDs; the sandbox keeps metadata[external_id] unique instead.
            raise InvalidRequest(
                f"A customer with metadata[external_id]={eid} exists", param="metadata[external_id]"
            )
        self.save(body)
        self.emit(f"{kind}.created", body)
        return body

    def update_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        body = self.load("customer", customer_id)
        previous: dict[str, Any] = {}
        for key in ("name", "email", "description"):
            if key in params:
                previous[key], body[key] = body[key], params[key]
        method = (params.get("invoice_settings") or {}).get("default_payment_method")
        if method:
            previous["invoice_settings"] = dict(body["invoice_settings"])
            body["invoice_settings"]["default_payment_method"] = method
        if "metadata" in params:
            previous["metadata"] = body["metadata"]
            body["metadata"] = {**body["metadata"], **obj.metadata(params)}
        self.save(body)
        self.emit("customer.updated", body, previous)
        return body

    def _items(self, params: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
        raw = params.get("items")
        if not isinstance(raw, list) or not raw:
            raise InvalidRequest("Missing required param: items.", param="items")
        return [
            (
                self.load("price", obj.required(item, "price"), param=f"items[{n}][price]"),
                obj.integer(item, "quantity", default=1, low=1),
            )
            for n, item in enumerate(raw)
        ]

    def create_subscription(self, params: dict[str, Any]) -> dict[str, Any]:
        cust = self.load("customer", obj.required(params, "customer"), param="customer")
        prices = self._items(params)
        intervals = {p["recurring"]["interval"] for p, _ in prices if p["recurring"]}
        currencies = {p["currency"] for p, _ in prices}
        if len(intervals) != 1 or len(currencies) != 1:
            raise InvalidRequest(
                "All items must be recurring with one interval and currency", param="items"
            )
        now = self.now()
        sub = obj.subscription(cust["id"], currencies.pop(), now, params)
        interval = intervals.pop()
        end = obj.add_interval(now, interval)
        sub["items"]["data"] = [
            obj.subscription_item(p, q, sub["id"], now, now, end) for p, q in prices
        ]
        sub["items"]["total_count"] = len(prices)
        sub.update(current_period_start=now, current_period_end=end)
        lines = self._period_lines(sub, (now, end), usage_period=None)
        inv = self._invoice(cust, sub, lines, (now, end), "subscription_create")
        sub["status"] = "active" if inv["status"] == "paid" else "incomplete"
        sub["latest_invoice"] = inv["id"]
        self.save(sub)
        self.emit("customer.subscription.created", sub)
        self._announce_invoice(inv)
        return sub

    def update_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        sub = self.load("subscription", sub_id)
        if set(params) <= {"metadata"}:
            return self._update_metadata(sub, params)
        if sub["status"] == "canceled":
            raise InvalidRequest("A canceled subscription can only update its metadata")
        previous: dict[str, Any] = {
            "items": {"object": "list", "data": [dict(i) for i in sub["items"]["data"]]}
        }
        behavior = params.get("proration_behavior", "create_prorations")
        if behavior not in {"create_prorations", "always_invoice", "none"}:
            raise InvalidRequest(
                f"Invalid proration_behavior: {behavior}", param="proration_behavior"
            )
        now = self.now()
        start, end = sub["current_period_start"], sub["current_period_end"]
        prorations: list[dict[str, Any]] = []
        for n, change in enumerate(params.get("items") or []):
            item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None:
                raise InvalidRequest(
                    f"No such subscription item: {change.get('id')}", param=f"items[{n}][id]"
                )
            new_price = (
                self.load("price", change["price"]) if change.get("price") else item["price"]
            )
            quantity = obj.integer(change, "quantity", default=item["quantity"], low=1)
            if new_price["recurring"]["usage_type"] == "licensed" and behavior != "none":
                old_amount = item["price"]["unit_amount"] * item["quantity"]
                new_amount = new_price["unit_amount"] * quantity
                remaining, length = max(0, end - now), end - start
                for amount, text, price_obj, qty in (
                    (
                        -obj.prorated(old_amount, remaining, length),
                        "Unused time on",
                        item["price"],
                        item["quantity"],
                    ),
                    (
                        obj.prorated(new_amount, remaining, length),
                        "Remaining time on",
                        new_price,
                        quantity,
                    ),
                ):
                    if amount:
                        prorations.append(
                            self._invoice_item(
                                sub, amount, f"{text} {qty} × {price_obj['id']}", (now, end)
                            )
                        )
            item.update(price=new_price, quantity=quantity)
        if "cancel_at_period_end" in params:
            previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
            sub["cancel_at_period_end"] = str(params["cancel_at_period_end"]).lower() == "true"
        if behavior == "always_invoice" and prorations:
            cust = self.load("customer", sub["customer"])
            inv = self._invoice(
                cust, sub, self._pending_lines(sub), (now, end), "subscription_update"
            )
            sub["latest_invoice"] = inv["id"]
            self._announce_invoice(inv)
            # A failed proration payment made the stored copy past_due; keep that status.
            sub["status"] = self.load("subscription", sub_id)["status"]
        self.save(sub)
        self.emit("customer.subscription.updated", sub, previous)
        return sub

    def _update_metadata(self, sub: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        # Stripe merges metadata keys; previous_attributes names only what changed.
        previous = {"metadata": dict(sub["metadata"])}
        sub["metadata"] = {**sub["metadata"], **obj.metadata(params)}
        self.save(sub)
        self.emit("customer.subscription.updated", sub, previous)
        return sub

    def cancel_subscription(self, sub_id: str) -> dict[str, Any]:
        sub = self.load("subscription", sub_id)
        if sub["status"] != "canceled":
            now = self.now()
            sub.update(status="canceled", canceled_at=now, ended_at=now)
            self.save(sub)
            self.emit("customer.subscription.deleted", sub)
        return sub

    def add_usage(self, item_id: str, params: dict[str, Any]) -> dict[str, Any]:
        subs = [s.body for s in self.store.select("subscription")]
        if not any(i["id"] == item_id for s in subs for i in s["items"]["data"]):
            raise InvalidRequest(f"No such subscription item: '{item_id}'", status=404)
        action = params.get("action", "increment")
        if action not in {"increment", "set"}:
            raise InvalidRequest(f"Invalid action: {action}", param="action")
        record = {
            "id": obj.new_id("mbur"),
            "object": "usage_record",
            "livemode": False,
            "quantity": obj.integer(params, "quantity"),
            "subscription_item": item_id,
            "timestamp": obj.integer(params, "timestamp", default=self.now()),
            "action": action,
            "created": self.now(),
        }
        return self.save(record)

    def run_due(self) -> None:
        """Renew every subscription whose period has ended, and retry failed payments due now."""
        now = self.now()
        for stored in self.store.select("invoice"):
            inv = stored.body
            if (
                inv["status"] == "open"
                and inv["next_payment_attempt"]
                and inv["next_payment_attempt"] <= now
            ):
                self.pay(inv)
                if inv["status"] == "open" and inv["next_payment_attempt"] is None:
                    self.close(inv, "uncollectible")
        for stored in self.store.select("subscription"):
            sub = stored.body
            while sub["status"] in {"active", "past_due"} and sub["current_period_end"] <= now:
                if sub["cancel_at_period_end"]:
                    self.cancel_subscription(sub["id"])
                    break
                sub = self._renew(sub)

    def _renew(self, sub: dict[str, Any]) -> dict[str, Any]:
        start, end = sub["current_period_start"], sub["current_period_end"]
        interval = sub["items"]["data"][0]["price"]["recurring"]["interval"]
        new_end = obj.add_interval(end, interval)
        for item in sub["items"]["data"]:
            item.update(current_period_start=end, current_period_end=new_end)
        sub.update(current_period_start=end, current_period_end=new_end)
        self.save(sub)
        cust = self.load("customer", sub["customer"])
        lines = self._period_lines(sub, (end, new_end), usage_period=(start, end))
        inv = self._invoice(cust, sub, lines, (end, new_end), "subscription_cycle")
        self._announce_invoice(inv)
        # Paying may have changed the stored subscription's status: build on that copy.
        sub = self.load("subscription", sub["id"])
        sub["latest_invoice"] = inv["id"]
        return self.save(sub)
