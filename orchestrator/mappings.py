"""The versioned mapping file: how billing's and the CRM's codes become the ERP's and billing's.

Operators read and edit it (TOML, `version = N` at the top); the worker loads it once at start
and refuses to start on a file that does not parse or does not hang together. A lookup that
finds nothing raises MappingMissing, a terminal error naming the exact key and the file's
version: never a silent default.
"""

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.client.canonical import Invoice, Subscription
from orchestrator.connectors.errors import Terminal

T = TypeVar("T")


class MappingsError(ValueError):
    """The mapping file cannot be used; the message names the file and what is wrong."""


class MappingMissing(Terminal):
    def __init__(self, key: str, version: int) -> None:
        super().__init__(
            f"mapping missing: {key} (mappings v{version})", classification="mapping_missing"
        )
        self.key = key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CurrencyMapping(_Strict):
    erp_currency: str = Field(min_length=1)
    legal_entity: str = Field(min_length=1)


class LegalEntity(_Strict):
    subsidiary: str = Field(min_length=1)
    tax_code: str = Field(min_length=1)


class ProductMapping(_Strict):
    item: str = Field(min_length=1)
    revenue_account: str = Field(min_length=1)


class PlanMapping(_Strict):
    product: str = Field(min_length=1)


class CrmProductMapping(_Strict):
    plan: str = Field(min_length=1)


class TaxRegion(_Strict):
    tax_code: str = Field(min_length=1)


class PaymentTerms(_Strict):
    days_until_due: int = Field(ge=0, le=365)


class Mappings(_Strict):
    version: int = Field(ge=1)
    currencies: dict[str, CurrencyMapping]
    legal_entities: dict[str, LegalEntity]
    # Billing customer ID -> legal entity, where a customer is booked apart from its currency.
    customers: dict[str, str] = Field(default_factory=dict)
    products: dict[str, ProductMapping]
    # Billing price ID -> product, for invoice lines that name only their price.
    prices: dict[str, str] = Field(default_factory=dict)
    # Lines billed without a product (one-off invoice items) and amounts outside the lines.
    one_off: ProductMapping | None = None
    # Billing price lookup key -> its product; the CRM's products name these plans.
    plans: dict[str, PlanMapping] = Field(default_factory=dict)
    crm_products: dict[str, CrmProductMapping] = Field(default_factory=dict)
    tax_regions: dict[str, TaxRegion] = Field(default_factory=dict)
    payment_terms: dict[str, PaymentTerms] = Field(default_factory=dict)

    def require(self, table: dict[str, T], name: str, key: str) -> T:
        found = table.get(key)
        if found is None:
            raise MappingMissing(f"{name}.{key}", self.version)
        return found

    def currency(self, code: str) -> CurrencyMapping:
        return self.require(self.currencies, "currencies", code)

    def legal_entity(self, *, customer_id: str | None, currency: str) -> tuple[str, LegalEntity]:
        """A customer's own entity first, else the one that books its currency."""
        name = self.customers.get(customer_id or "") or self.currency(currency).legal_entity
        return name, self.require(self.legal_entities, "legal_entities", name)

    def product(self, *, product_id: str | None, price_id: str | None) -> ProductMapping:
        if product_id is None and price_id is not None:
            product_id = self.require(self.prices, "prices", price_id)
        if product_id is None:
            if self.one_off is None:
                raise MappingMissing("one_off", self.version)
            return self.one_off
        return self.require(self.products, "products", product_id)

    def crosscheck(self) -> list[str]:
        """References between tables that lead nowhere."""
        problems = [
            f"currencies.{c}.legal_entity = {m.legal_entity!r} is not in legal_entities"
            for c, m in self.currencies.items()
            if m.legal_entity not in self.legal_entities
        ]
        problems += [
            f"customers.{c} = {e!r} is not in legal_entities"
            for c, e in self.customers.items()
            if e not in self.legal_entities
        ]
        problems += [
            f"prices.{p} = {prod!r} is not in products"
            for p, prod in self.prices.items()
            if prod not in self.products
        ]
        problems += [
            f"plans.{p}.product = {m.product!r} is not in products"
            for p, m in self.plans.items()
            if m.product not in self.products
        ]
        problems += [
            f"crm_products.{p}.plan = {m.plan!r} is not in plans"
            for p, m in self.crm_products.items()
            if m.plan not in self.plans
        ]
        return problems


SHIPPED = "mappings.toml"


def load_mappings(path: str | Path | None = None) -> Mappings:
    """The file at `path`, or the one shipped in the package; MappingsError if unusable."""
    where = str(path) if path else f"orchestrator/{SHIPPED} (shipped)"
    try:
        text = (
            Path(path).read_text(encoding="utf-8")
            if path
            else resources.files("orchestrator").joinpath(SHIPPED).read_text(encoding="utf-8")
        )
        raw = tomllib.loads(text)
    except OSError as exc:
        raise MappingsError(f"mapping file {where} cannot be read: {exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingsError(f"mapping file {where} is not valid TOML: {exc}") from exc
    try:
        mappings = Mappings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise MappingsError(f"mapping file {where} has the wrong shape: {problems}") from exc
    broken = mappings.crosscheck()
    if broken:
        raise MappingsError(f"mapping file {where} (v{mappings.version}): {'; '.join(broken)}")
    return mappings


# -- What the ERP postings need, resolved from the mappings ------------------------------------


@dataclass(frozen=True, slots=True)
class LineCoding:
    item: str
    revenue_account: str


@dataclass(frozen=True, slots=True)
class Coding:
    """How one invoice or contract is booked: entity, currency, tax code and a line per line."""

    version: int
    legal_entity: str
    subsidiary: str
    erp_currency: str
    tax_code: str
    lines: tuple[LineCoding, ...]
    # For amounts outside the lines (tax, discounts); None when the lines cover the total.
    unitemized: LineCoding | None = None


def _entity(m: Mappings, customer_id: str, currency: str) -> tuple[str, LegalEntity, str]:
    erp_currency = m.currency(currency).erp_currency
    name, entity = m.legal_entity(customer_id=customer_id, currency=currency)
    return name, entity, erp_currency


def code_invoice(m: Mappings, invoice: Invoice) -> Coding:
    name, entity, erp_currency = _entity(m, invoice.customer_id, invoice.currency)
    lines = tuple(
        LineCoding(p.item, p.revenue_account)
        for p in (
            m.product(product_id=line.product_id, price_id=line.price_id) for line in invoice.lines
        )
    )
    unlined = invoice.amount_minor - sum(line.amount_minor for line in invoice.lines)
    extra = None
    if unlined or not invoice.lines:
        one_off = m.product(product_id=None, price_id=None)
        extra = LineCoding(one_off.item, one_off.revenue_account)
    return Coding(m.version, name, entity.subsidiary, erp_currency, entity.tax_code, lines, extra)


def code_contract(m: Mappings, subscription: Subscription) -> Coding:
    name, entity, erp_currency = _entity(m, subscription.customer_id, subscription.currency)
    lines = tuple(
        LineCoding(p.item, p.revenue_account)
        for p in (
            m.product(product_id=item.product_id, price_id=item.price_id)
            for item in subscription.items
        )
    )
    return Coding(m.version, name, entity.subsidiary, erp_currency, entity.tax_code, lines)
