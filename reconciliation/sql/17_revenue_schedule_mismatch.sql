-- Revenue schedules created from an invoice must add up to what billing invoiced, in its currency.
-- Any invoice whose schedules differ at all is a suspect (02_prepare.sql), so invoice_match has it.
WITH revenue_off AS (
    SELECT m.invoice_id, m.b_period AS period, m.b_amount AS amount_minor,
           m.b_currency AS currency, m.b_status AS status, m.correlation_ids,
           r.total_minor, r.currency AS s_currency, r.mixed_currencies
    FROM invoice_match m
    JOIN revenue_by_invoice r ON r.invoice_id = m.invoice_id
    LEFT JOIN tolerances t ON t.currency = m.b_currency
    CROSS JOIN params p
    WHERE m.in_billing
      AND (r.mixed_currencies OR r.currency <> m.b_currency
           OR abs(m.b_amount - r.total_minor) > coalesce(t.tolerance_minor, p.tolerance_minor))
      AND (p.period IS NULL OR m.b_period = p.period)
)
SELECT 'revenue_schedule_mismatch' AS kind, r.invoice_id AS match_key, r.period AS period,
       'erp' AS system,
       'billing' AS source_system, r.invoice_id AS source_id, r.amount_minor AS source_amount_minor,
       r.currency AS source_currency, r.status AS source_status,
       'erp' AS target_system, array_to_string(rec.record_ids, ',') AS target_id,
       r.total_minor AS target_amount_minor, r.s_currency AS target_currency,
       CASE WHEN NOT r.mixed_currencies AND r.s_currency = r.currency
            THEN abs(r.amount_minor - r.total_minor) ELSE r.amount_minor END
           AS amount_at_risk_minor,
       r.currency AS currency,
       r.correlation_ids,
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
