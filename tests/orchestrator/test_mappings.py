"""The versioned mapping file: loading, refusing a bad file, coding ERP postings, and a missing
mapping stopping a real run (webhook, API, arq worker, sandbox ERP) with the key it lacks.
"""

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from lineage.enums import Role
from orchestrator.client.canonical import Invoice, InvoiceLine
from orchestrator.mappings import MappingMissing, MappingsError, code_invoice, load_mappings
from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import build_worker, run_supervised
from sandbox.traffic import CRM_PRODUCTS, PLANS
from tests.factories import FIXTURE_INVOICE, new_invoice, signed_headers, stripe_event
from tests.support.concord_http import Concord, created_event, steps_of
from tests.workers import run_burst

SHIPPED = Path(__file__).parents[2] / "orchestrator" / "mappings.toml"


def _shipped(version: int = 1) -> str:
    text = SHIPPED.read_text()
    assert "\nversion = 1\n" in text
    return text.replace("\nversion = 1\n", f"\nversion = {version}\n", 1)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mappings.toml"
    path.write_text(text)
    return str(path)


def test_the_shipped_file_maps_what_the_demo_and_the_fixtures_use() -> None:
    mappings = load_mappings()

    assert mappings.version >= 1
    for plan in PLANS:
        assert f"prod_{plan}" in mappings.products
        assert plan in mappings.plans
    assert "prod_api_calls" in mappings.products
    assert set(CRM_PRODUCTS.values()) <= set(mappings.crm_products)
    # Stripe's own fixture objects (tests/fixtures/stripe).
    assert "prod_QXg1hqf4jFNsqG" in mappings.products
    assert mappings.one_off is not None
    for currency in ("USD", "EUR", "JPY", "KWD"):
        assert currency in mappings.currencies


def test_a_line_without_product_is_booked_one_off_and_an_unknown_one_is_refused() -> None:
    mappings = load_mappings()
    invoice = Invoice(
        invoice_id="in_1",
        customer_id="cus_1",
        amount_minor=1500,
        currency="USD",
        lines=[
            InvoiceLine(amount_minor=1000, product_id="prod_pro_monthly"),
            InvoiceLine(amount_minor=400),
        ],
    )

    coding = code_invoice(mappings, invoice)

    assert [(c.item, c.revenue_account) for c in coding.lines] == [
        ("SAAS-PRO", "4020"),
        ("ONE-OFF", "4900"),
    ]
    # 100 billed outside the lines (tax) is booked too, never dropped.
    assert coding.unitemized is not None
    assert (coding.subsidiary, coding.tax_code, coding.version) == ("1", "US-SAAS-EXEMPT", 1)
    unknown = invoice.model_copy(update={"lines": [InvoiceLine(amount_minor=1, price_id="p_9")]})
    with pytest.raises(MappingMissing) as caught:
        code_invoice(mappings, unknown)
    assert str(caught.value) == "mapping missing: prices.p_9 (mappings v1)"
    assert caught.value.classification == "mapping_missing"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 2\n[currencies\n", "is not valid TOML"),
        (
            _shipped() + '\n[products.prod_x]\nitem = "X"\n',
            "products.prod_x.revenue_account: Field required",
        ),
        (_shipped(0), "version: Input should be greater than or equal to 1"),
        ('colour = "blue"\n' + _shipped(), "colour: Extra inputs are not permitted"),
        (
            _shipped() + '\n[plans.gold]\nproduct = "prod_gold"\n',
            "plans.gold.product = 'prod_gold' is not in products",
        ),
    ],
)
def test_a_file_that_cannot_be_used_stops_the_worker_with_a_clear_message(
    tmp_path: Path, text: str, message: str
) -> None:
    settings = OrchestratorSettings(mappings_file=_write(tmp_path, text))

    with pytest.raises(MappingsError) as caught:
        build_worker(settings)
    with pytest.raises(SystemExit) as stopped:
        run_supervised(settings)

    assert message in str(caught.value)
    assert str(tmp_path / "mappings.toml") in str(caught.value)
    assert str(stopped.value).startswith("concord worker: not starting: mapping file")


def test_a_missing_file_is_refused_and_a_good_override_is_used(tmp_path: Path) -> None:
    with pytest.raises(MappingsError, match="cannot be read"):
        load_mappings(tmp_path / "nope.toml")

    loaded = load_mappings(_write(tmp_path, _shipped(7)))

    assert loaded.version == 7


def _invoice_with_product(product: str, **fields: Any) -> dict[str, Any]:
    invoice = new_invoice(**fields)
    lines = copy.deepcopy(FIXTURE_INVOICE["lines"])
    lines["data"][0]["pricing"]["price_details"] = {"price": "price_x", "product": product}
    invoice["lines"] = lines
    return invoice


async def _post(client: httpx.AsyncClient, invoice: dict[str, Any]) -> str:
    body = json.dumps(stripe_event(invoice=invoice)).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    return str(response.json()["correlation_id"])


async def test_an_invoice_is_posted_with_the_entity_item_account_and_tax_code_it_maps_to(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
    tmp_path: Path,
) -> None:
    settings = worker_settings.model_copy(update={"mappings_file": _write(tmp_path, _shipped(4))})
    invoice = _invoice_with_product("prod_pro_monthly", currency="eur")
    correlation_id = await _post(client, invoice)

    await run_burst(settings)

    record = httpx.get(f"{sandbox_url}/erp/record/v1/invoice/eid:{invoice['id']}").json()
    assert record["subsidiary"] == {"id": "2"}
    assert record["currency"] == {"refName": "EUR"}
    [line] = record["item"]["items"]
    assert line["item"] == {"externalId": "SAAS-PRO"}
    assert line["account"] == {"id": "4020"}
    assert line["taxCode"] == {"refName": "EU-VAT-RC"}
    assert record["memo"].endswith("coded by mappings v4")
    # Lineage names the mappings version that coded the posting, for operators.
    viewer = {"Authorization": f"Bearer {api_keys[Role.VIEWER]}"}
    detail = (await client.get(f"/v1/transactions/{correlation_id}", headers=viewer)).json()
    [step] = detail["runs"][0]["steps"]
    assert step["name"] == "erp.post_invoice"
    assert step["output"] == {
        "mappings_version": 4,
        "legal_entity": "concord_eu",
        "subsidiary": "2",
        "tax_code": "EU-VAT-RC",
    }


async def test_a_contract_posting_names_the_mappings_version_in_lineage(
    concord: Concord,
) -> None:
    answer = await concord.stripe(created_event())

    await concord.run_workers()

    steps = steps_of(await concord.transaction(answer["correlation_id"]))
    assert steps["erp.upsert_contract"]["output"] == {
        "mappings_version": 1,
        "legal_entity": "concord_us",
        "subsidiary": "1",
        "tax_code": "US-SAAS-EXEMPT",
    }


async def test_a_missing_mapping_is_a_terminal_exception_naming_the_key_and_version(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
    tmp_path: Path,
) -> None:
    settings = worker_settings.model_copy(update={"mappings_file": _write(tmp_path, _shipped(3))})
    invoice = _invoice_with_product("prod_unmapped")
    correlation_id = await _post(client, invoice)

    await run_burst(settings)

    viewer = {"Authorization": f"Bearer {api_keys[Role.VIEWER]}"}
    detail = (await client.get(f"/v1/transactions/{correlation_id}", headers=viewer)).json()
    assert detail["state"] == "exception"
    [step] = detail["runs"][0]["steps"]
    # Terminal: one attempt, no retries.
    assert [a["outcome"] for a in step["attempts"]] == ["failed"]
    [item] = (await client.get("/v1/exceptions", headers=viewer)).json()["items"]
    assert item["classification"] == "mapping_missing"
    assert "mapping missing: products.prod_unmapped (mappings v3)" in item["message"]
    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert [r for r in ledger if r["external_id"] == invoice["id"]] == []
