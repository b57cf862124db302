-- Revenue schedules created from an invoice must add up to what billing invoiced, in its currency.
CREATE TEMP TABLE revenue_off AS
SELECT b.invoice_id, b.period, b.amount_minor, b.currency, b.status,
       s.total_minor, s.currency AS s_currency, s.currencies
FROM (
    SELECT invoice_external_id AS invoice_id, sum(amount_minor) AS total_minor,
           min(currency) AS currency, count(DISTINCT currency) AS currencies
    FROM erp_revenue_schedules WHERE invoice_external_id IS NOT NULL
    GROUP BY invoice_external_id
) s
JOIN billing_invoices b ON b.invoice_id = s.invoice_id
LEFT JOIN tolerances t ON t.currency = b.currency
CROSS JOIN params p
WHERE (s.currencies > 1 OR s.currency <> b.currency
       OR abs(b.amount_minor - s.total_minor) > coalesce(t.tolerance_minor, p.tolerance_minor))
  AND (p.period IS NULL OR b.period = p.period);

INSERT INTO findings BY NAME
SELECT 'revenue_schedule_mismatch' AS kind, r.invoice_id AS match_key, r.period AS period,
       'erp' AS system,
       'billing' AS source_system, r.invoice_id AS source_id, r.amount_minor AS source_amount_minor,
       r.currency AS source_currency, r.status AS source_status,
       'erp' AS target_system, array_to_string(rec.record_ids, ',') AS target_id,
       r.total_minor AS target_amount_minor, r.s_currency AS target_currency,
       CASE WHEN r.currencies = 1 AND r.s_currency = r.currency
            THEN abs(r.amount_minor - r.total_minor) ELSE r.amount_minor END
           AS amount_at_risk_minor,
       r.currency AS currency,
       coalesce(l.correlation_ids, []) AS correlation_ids,
       list_concat(
           [{'system': 'billing', 'object_type': 'invoice', 'external_id': r.invoice_id}],
           list_transform(rec.record_ids,
               lambda x: {'system': 'erp', 'object_type': 'revenueplan', 'external_id': x})
       ) AS refs
FROM revenue_off r
-- Record ids of the plans that are off only, gathered after the sums are compared.
JOIN (
    SELECT invoice_external_id AS invoice_id, list_sort(list(record_id)) AS record_ids
    FROM erp_revenue_schedules e SEMI JOIN revenue_off r ON r.invoice_id = e.invoice_external_id
    GROUP BY invoice_external_id
) rec ON rec.invoice_id = r.invoice_id
-- Lineage of these invoices only (lineage_by_invoice holds the invoice suspects alone).
LEFT JOIN (
    SELECT invoice_id, list_sort(list_distinct(list(correlation_id))) AS correlation_ids
    FROM lineage_postings l SEMI JOIN revenue_off r ON r.invoice_id = l.invoice_id
    GROUP BY invoice_id
) l ON l.invoice_id = r.invoice_id;
