"""Quote-to-cash: a CRM deal won without a subscription becomes one in billing.

The order is read from the CRM (the deal, its company and that company's parents, its line
items) and checked against the mappings before anything is written. Every problem found is
named in one terminal error, so an operator fixes the deal once: `deal 123: company 456 has no
tax region (property tax_region)`.

The validation step hands the order it checked on in lineage, and the billing steps build from
that order alone: the CRM is read once per run, and what billing creates is what was validated,
even if the deal changes in between. A replay from a billing step uses the recorded order; a
replay from the start reads the deal again.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from lineage.enums import System
from orchestrator.client.canonical import DealEvent
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.hubspot import CrmObject
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.mappings import MappingMissing, Mappings

VALIDATE = "crm.validate_deal"

# A company inherits tax region and payment terms from its parents, this many levels up.
MAX_HIERARCHY = 5


@dataclass(frozen=True, slots=True)
class Order:
    deal_id: str
    deal_name: str
    company_id: str
    company_name: str
    # The parent companies above the billed one, nearest first.
    parents: tuple[str, ...]
    currency: str
    legal_entity: str
    tax_region: str
    tax_code: str
    payment_terms: str
    days_until_due: int
    # (billing price lookup key, quantity) per line item.
    plans: tuple[tuple[str, int], ...]
    mappings_version: int

    @property
    def customer_external_id(self) -> str:
        return f"crm-company-{self.company_id}"

    @property
    def subscription_external_id(self) -> str:
        return f"crm-deal-{self.deal_id}"

    def metadata(self) -> dict[str, str]:
        """What billing keeps of the order: where it came from and how it was coded."""
        kept = {
            "crm_deal_id": self.deal_id,
            "crm_company_id": self.company_id,
            "legal_entity": self.legal_entity,
            "tax_region": self.tax_region,
            "tax_code": self.tax_code,
            "payment_terms": self.payment_terms,
            "mappings_version": str(self.mappings_version),
        }
        if self.parents:
            kept["crm_parent_companies"] = ",".join(self.parents)
        return kept

    def to_output(self) -> dict[str, Any]:
        """The order as the validation step's output: JSON types only (lists for tuples), so
        the order a later step reads is the same whether it comes from this run or lineage."""
        output: dict[str, Any] = _ORDER.dump_python(self, mode="json")
        return output

    @classmethod
    def from_output(cls, output: Mapping[str, Any]) -> "Order":
        try:
            return _ORDER.validate_python(output)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise Terminal(
                f"the order {VALIDATE} recorded is unreadable ({where}: {first['msg']}); "
                f"replay from {VALIDATE}",
                classification="validation",
            ) from exc


_ORDER = TypeAdapter(Order)


class OrderInvalid(Terminal):
    def __init__(self, deal_id: str, problems: list[str]) -> None:
        # Only missing mappings: the fix is in the mapping file, not in the CRM.
        mapping = all("mapping missing: " in p for p in problems)
        super().__init__(
            f"deal {deal_id}: {'; '.join(problems)}",
            classification="mapping_missing" if mapping else "validation",
        )
        self.problems = problems


async def _hierarchy(
    deps: WorkerDeps, company: CrmObject, problems: list[str], ctx: CallContext
) -> list[CrmObject]:
    """The company and its parents, nearest first, as HubSpot's company associations say."""
    chain = [company]
    while len(chain) <= MAX_HIERARCHY:
        current = chain[-1]
        parents = current.linked("companies", "child_to_parent_company")
        if not parents:
            return chain
        if len(parents) > 1:
            problems.append(
                f"company {current.object_id} has {len(parents)} parent companies "
                f"({', '.join(parents)}); a company has at most one"
            )
            return chain
        if parents[0] in {c.object_id for c in chain}:
            problems.append(f"company {current.object_id} is its own ancestor")
            return chain
        parent = await deps.crm.read("companies", parents[0], associations=("companies",), ctx=ctx)
        if parent is None:
            problems.append(
                f"parent company {parents[0]} of company {current.object_id} does not exist"
            )
            return chain
        chain.append(parent)
    problems.append(f"company {company.object_id} is more than {MAX_HIERARCHY} levels deep")
    return chain


def _inherited(chain: list[CrmObject], name: str) -> str:
    return next((c.properties[name] for c in chain if c.properties.get(name)), "")


async def _line_items(
    deps: WorkerDeps, deal: CrmObject, mappings: Mappings, problems: list[str], ctx: CallContext
) -> list[tuple[str, int]]:
    ids = deal.linked("line_items")
    if not ids:
        problems.append("has no line items")
    plans: list[tuple[str, int]] = []
    for line_id in ids:
        line = await deps.crm.read("line_items", line_id, ctx=ctx)
        if line is None:
            problems.append(f"line item {line_id} does not exist")
            continue
        product = line.properties.get("hs_product_id", "")
        quantity = line.properties.get("quantity", "")
        if not product:
            problems.append(f"line item {line_id} has no product (property hs_product_id)")
        elif product not in mappings.crm_products:
            problems.append(
                f"line item {line_id}: {MappingMissing(f'crm_products.{product}', mappings.version)}"
            )
        if not quantity.isdigit() or int(quantity) < 1:
            problems.append(f"line item {line_id} has no whole quantity (property quantity)")
        if product in mappings.crm_products and quantity.isdigit() and int(quantity) >= 1:
            plans.append((mappings.crm_products[product].plan, int(quantity)))
    return plans


def _code(mappings: Mappings, table: str, key: str, what: str, problems: list[str]) -> None:
    problems.append(f"{what}: {MappingMissing(f'{table}.{key}', mappings.version)}")


@dataclass(frozen=True, slots=True)
class _Terms:
    chain: tuple[CrmObject, ...] = ()
    region: str = ""
    tax_code: str = ""
    terms: str = ""
    days: int = 0


async def _company_terms(
    deps: WorkerDeps, deal: CrmObject, problems: list[str], ctx: CallContext
) -> _Terms:
    """The billed company, its parents, and the tax region and payment terms they set."""
    mappings = deps.mappings
    companies = deal.linked("companies")
    if len(companies) != 1:
        listed = f" ({', '.join(companies)}); exactly one is billed" if companies else ""
        problems.append(f"has {len(companies) or 'no'} associated companies{listed}")
        return _Terms()
    company = await deps.crm.read("companies", companies[0], associations=("companies",), ctx=ctx)
    if company is None:
        problems.append(f"company {companies[0]} does not exist")
        return _Terms()
    chain = await _hierarchy(deps, company, problems, ctx)
    region, terms = _inherited(chain, "tax_region"), _inherited(chain, "payment_terms")
    found = _Terms(tuple(chain), region, terms=terms)
    where = f"company {company.object_id}"
    if not region:
        problems.append(f"{where} has no tax region (property tax_region)")
    elif region not in mappings.tax_regions:
        _code(mappings, "tax_regions", region, where, problems)
    else:
        found = _Terms(found.chain, region, mappings.tax_regions[region].tax_code, terms)
    if not terms:
        problems.append(f"{where} has no payment terms (property payment_terms)")
    elif terms not in mappings.payment_terms:
        _code(mappings, "payment_terms", terms, where, problems)
    else:
        days = mappings.payment_terms[terms].days_until_due
        found = _Terms(found.chain, region, found.tax_code, terms, days)
    return found


async def read_order(deps: WorkerDeps, deal_event: DealEvent, ctx: CallContext) -> Order:
    """The deal as an order billing can take, or OrderInvalid naming everything missing."""
    mappings, deal_id = deps.mappings, deal_event.deal_id
    deal = await deps.crm.read("deals", deal_id, associations=("companies", "line_items"), ctx=ctx)
    if deal is None:
        raise OrderInvalid(deal_id, ["the deal does not exist in the CRM"])
    problems: list[str] = []
    currency = deal.properties.get("deal_currency_code", "").upper()
    legal_entity = ""
    if not currency:
        problems.append("has no currency (property deal_currency_code)")
    elif currency not in mappings.currencies:
        _code(mappings, "currencies", currency, "currency", problems)
    else:
        legal_entity = mappings.currencies[currency].legal_entity
    company = await _company_terms(deps, deal, problems, ctx)
    plans = await _line_items(deps, deal, mappings, problems, ctx)
    if problems:
        raise OrderInvalid(deal_id, problems)
    billed = company.chain[0]
    return Order(
        deal_id=deal_id,
        deal_name=deal.properties.get("dealname", ""),
        company_id=billed.object_id,
        company_name=billed.properties.get("name", "") or f"Company {billed.object_id}",
        parents=tuple(c.object_id for c in company.chain[1:]),
        currency=currency,
        legal_entity=legal_entity,
        tax_region=company.region,
        tax_code=company.tax_code,
        payment_terms=company.terms,
        days_until_due=company.days,
        plans=tuple(plans),
        mappings_version=mappings.version,
    )


# -- The steps -----------------------------------------------------------------------------------


def _deal(data: BaseModel) -> DealEvent:
    assert isinstance(data, DealEvent)
    return data


def deal_key(data: BaseModel) -> str:
    return _deal(data).deal_id


def subscription_key(data: BaseModel) -> str:
    return f"crm-deal-{_deal(data).deal_id}"


async def validate(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    order = await read_order(deps, _deal(data), ctx)
    return TargetRecord(
        System.CRM,
        "deals",
        order.deal_id,
        order.deal_id,
        http_status=200,
        output=order.to_output(),
    )


def _validated(ctx: CallContext) -> Order:
    """The order the validation step checked, never a fresh read of the CRM."""
    return Order.from_output(ctx.earlier[VALIDATE])


async def billing_customer(deps: WorkerDeps, _data: BaseModel, ctx: CallContext) -> TargetRecord:
    order = _validated(ctx)
    return await deps.billing.ensure_customer(
        external_id=order.customer_external_id, name=order.company_name, email=None, ctx=ctx
    )


async def billing_subscription(
    deps: WorkerDeps, _data: BaseModel, ctx: CallContext
) -> TargetRecord:
    order = _validated(ctx)
    # One subscription per deal, even when the deal is won a second time.
    existing = await deps.billing.find_subscription(order.subscription_external_id, ctx=ctx)
    if existing is not None:
        return existing
    return await deps.billing.create_subscription(
        external_id=order.subscription_external_id,
        customer_external_id=order.customer_external_id,
        plans=order.plans,
        metadata=order.metadata(),
        days_until_due=order.days_until_due,
        ctx=ctx,
    )


async def find_subscription(
    deps: WorkerDeps, external_id: str, ctx: CallContext
) -> TargetRecord | None:
    return await deps.billing.find_subscription(external_id, ctx=ctx)
