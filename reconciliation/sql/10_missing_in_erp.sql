-- Billing finalized an invoice, the ERP has no record of it, and Concord never claimed to post
-- it (if it did, the finding is posted_but_missing instead).
SELECT 'missing_in_erp' AS kind, m.invoice_id AS match_key, m.b_period AS period, 'erp' AS system,
       'billing' AS source_system, m.invoice_id AS source_id, m.b_amount AS source_amount_minor,
       m.b_currency AS source_currency, m.b_status AS source_status, 'erp' AS target_system,
       m.b_amount AS amount_at_risk_minor, m.b_currency AS currency,
       m.correlation_ids,
       [{'system': 'billing', 'object_type': 'invoice', 'external_id': m.invoice_id}] AS refs
FROM invoice_match m, params p
WHERE m.in_billing AND NOT m.in_erp AND NOT m.posted
  AND m.b_status IN ('open', 'paid', 'uncollectible')
  AND (p.period IS NULL OR m.b_period = p.period)
