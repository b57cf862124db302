-- Matching, done once, in two passes. The first pass joins all of billing, the ERP and lineage
-- but keeps only the ids of invoices where something differs (a few per cent at most), the
-- second builds the full picture for those invoices alone. Materializing a wide row for every
-- invoice that agrees would cost more than the whole comparison.

-- ERP records without an externalId are known only by the invoice lineage says it posted there.
-- The (usually empty) unkeyed side is filtered first, so lineage only probes it.
CREATE TEMP TABLE erp_unkeyed AS
SELECT e.record_id, e.amount_minor, e.currency, e.status, e.period, min(l.invoice_id) AS invoice_id
FROM (SELECT * FROM erp_invoices WHERE external_id IS NULL) e
LEFT JOIN lineage_postings l ON l.erp_record_id = e.record_id
GROUP BY ALL;

CREATE TEMP TABLE erp_applied AS
SELECT invoice_external_id AS invoice_id, sum(amount_minor) AS applied_minor
FROM erp_payments WHERE invoice_external_id IS NOT NULL GROUP BY invoice_external_id;

-- Issued credit notes per invoice. An invoice they cover in full is settled in billing whatever
-- its status says, so the ERP must show it closed (credited, i.e. paid, or voided).
CREATE TEMP TABLE credited AS
SELECT invoice_id, sum(amount_minor) AS credited_minor
FROM billing_credit_notes WHERE invoice_id IS NOT NULL GROUP BY invoice_id;

-- Revenue schedules per invoice (a few per cent of the rows): compared in pass one, while billing
-- is being read anyway, rather than by a second scan of billing.
CREATE TEMP TABLE revenue_by_invoice AS
SELECT invoice_external_id AS invoice_id, sum(amount_minor) AS total_minor,
       min(currency) AS currency, min(currency) <> max(currency) AS mixed_currencies
FROM erp_revenue_schedules WHERE invoice_external_id IS NOT NULL GROUP BY invoice_external_id;

-- Pass one. Any difference at all makes a suspect: the rules apply tolerances and periods.
-- UNION (not UNION ALL) leaves each id once.
CREATE TEMP TABLE suspects AS
SELECT coalesce(b.invoice_id, e.external_id, l.invoice_id) AS invoice_id
FROM billing_invoices b
FULL OUTER JOIN erp_invoices e ON e.external_id = b.invoice_id
FULL OUTER JOIN lineage_postings l ON l.invoice_id = coalesce(b.invoice_id, e.external_id)
LEFT JOIN erp_applied a ON a.invoice_id = e.external_id
LEFT JOIN revenue_by_invoice r ON r.invoice_id = b.invoice_id
WHERE coalesce(b.invoice_id, e.external_id, l.invoice_id) IS NOT NULL
  AND (b.invoice_id IS NULL OR e.external_id IS NULL
       OR (r.invoice_id IS NOT NULL
           AND (r.mixed_currencies OR r.currency <> b.currency OR r.total_minor <> b.amount_minor))
       OR b.amount_minor IS DISTINCT FROM e.amount_minor
       OR b.currency IS DISTINCT FROM e.currency
       OR (b.status <> 'draft'
           AND CASE WHEN e.status = 'open'
                         AND coalesce(a.applied_minor, 0) >= e.amount_minor THEN 'paid'
                    ELSE e.status END
               IS DISTINCT FROM CASE b.status WHEN 'open' THEN 'open' WHEN 'paid' THEN 'paid'
                    WHEN 'uncollectible' THEN 'open' WHEN 'void' THEN 'voided'
                    ELSE b.status END))
UNION
SELECT external_id FROM erp_invoices WHERE external_id IS NOT NULL
GROUP BY external_id HAVING count(*) > 1
UNION
SELECT invoice_id FROM erp_unkeyed WHERE invoice_id IS NOT NULL
UNION
SELECT invoice_id FROM credited;

-- Pass two: every ERP invoice record of a suspect, and the invoice it belongs to.
CREATE TEMP TABLE erp_link AS
SELECT e.record_id, e.amount_minor, e.currency, e.status, e.period,
       e.external_id AS invoice_id
FROM erp_invoices e SEMI JOIN suspects s ON s.invoice_id = e.external_id
UNION ALL
SELECT record_id, amount_minor, currency, status, period, invoice_id FROM erp_unkeyed;

-- One row per invoice in the ERP: the lowest record id is the one compared, the rest are copies.
CREATE TEMP TABLE erp_by_invoice AS
SELECT invoice_id,
       count(*) AS records,
       sum(amount_minor) AS total_minor,
       list_sort(list(record_id)) AS record_ids,
       arg_min({'record_id': record_id, 'amount_minor': amount_minor, 'currency': currency,
                'status': status, 'period': period}, record_id) AS p
FROM erp_link WHERE invoice_id IS NOT NULL GROUP BY invoice_id;

-- What Concord believes about each suspect: posted at least once, by which transactions.
CREATE TEMP TABLE lineage_by_invoice AS
SELECT invoice_id,
       bool_or(state = 'posted') AS posted,
       -- Sorted after aggregating: an ordered aggregate sorts inside every group, far slower.
       list_sort(list_distinct(list(correlation_id))) AS correlation_ids,
       list_sort(list_distinct(list(erp_record_id))) AS record_ids,
       arg_max({'amount_minor': amount_minor, 'currency': currency, 'period': period},
               state = 'posted') AS p
FROM lineage_postings l SEMI JOIN suspects s ON s.invoice_id = l.invoice_id
GROUP BY invoice_id;

CREATE TEMP TABLE invoice_match AS
SELECT coalesce(b.invoice_id, e.invoice_id, l.invoice_id) AS invoice_id,
       b.invoice_id IS NOT NULL AS in_billing,
       b.amount_minor AS b_amount, b.currency AS b_currency, b.status AS b_status,
       b.period AS b_period,
       b.amount_minor > 0 AND coalesce(c.credited_minor, 0) >= b.amount_minor
           AND b.status IN ('open', 'paid', 'uncollectible') AS b_credited,
       e.invoice_id IS NOT NULL AS in_erp,
       coalesce(e.records, 0) AS e_records, e.total_minor AS e_total, e.record_ids,
       e.p.record_id AS e_record_id, e.p.amount_minor AS e_amount, e.p.currency AS e_currency,
       e.p.period AS e_period,
       -- NetSuite leaves an invoice Open until payments cover it: count applied payments too.
       -- One with nothing to collect (zero, or a proration credit below it) is covered by none,
       -- as billing marks it paid at once and NetSuite shows a zero invoice Paid In Full.
       CASE WHEN e.p.status = 'open'
                 AND coalesce(a.applied_minor, 0) >= e.p.amount_minor THEN 'paid'
            ELSE e.p.status END AS e_status,
       coalesce(a.applied_minor, 0) AS e_applied,
       l.invoice_id IS NOT NULL AS in_lineage,
       coalesce(l.posted, false) AS posted,
       coalesce(l.correlation_ids, []) AS correlation_ids,
       coalesce(l.record_ids, []) AS l_record_ids,
       l.p.amount_minor AS l_amount, l.p.currency AS l_currency, l.p.period AS l_period
FROM (SELECT * FROM billing_invoices b SEMI JOIN suspects s ON s.invoice_id = b.invoice_id) b
FULL OUTER JOIN erp_by_invoice e ON e.invoice_id = b.invoice_id
FULL OUTER JOIN lineage_by_invoice l ON l.invoice_id = coalesce(b.invoice_id, e.invoice_id)
-- The suspects' payments only: a LEFT JOIN builds on its right side, so that side is kept small.
LEFT JOIN (SELECT * FROM erp_applied a SEMI JOIN suspects s ON s.invoice_id = a.invoice_id) a
    ON a.invoice_id = coalesce(b.invoice_id, e.invoice_id)
LEFT JOIN credited c ON c.invoice_id = b.invoice_id;

CREATE TEMP TABLE findings (
    kind VARCHAR NOT NULL,
    match_key VARCHAR NOT NULL,
    period VARCHAR,
    system VARCHAR NOT NULL,
    source_system VARCHAR,
    source_id VARCHAR,
    source_amount_minor BIGINT,
    source_currency VARCHAR,
    source_status VARCHAR,
    target_system VARCHAR,
    target_id VARCHAR,
    target_amount_minor BIGINT,
    target_currency VARCHAR,
    target_status VARCHAR,
    amount_at_risk_minor BIGINT NOT NULL,
    currency VARCHAR,
    correlation_ids VARCHAR[] NOT NULL,
    refs STRUCT(system VARCHAR, object_type VARCHAR, external_id VARCHAR)[] NOT NULL
);
