-- Same invoice in another currency: the whole billed amount is at risk, in billing's currency.
SELECT 'currency_mismatch' AS kind, m.invoice_id || '|' || m.e_record_id AS match_key,
       m.b_period AS period, 'erp' AS system,
       'billing' AS source_system, m.invoice_id AS source_id, m.b_amount AS source_amount_minor,
       m.b_currency AS source_currency, m.b_status AS source_status,
       'erp' AS target_system, m.e_record_id AS target_id, m.e_amount AS target_amount_minor,
       m.e_currency AS target_currency, m.e_status AS target_status,
       m.b_amount AS amount_at_risk_minor, m.b_currency AS currency,
       m.correlation_ids,
       [{'system': 'billing', 'object_type': 'invoice', 'external_id': m.invoice_id},
        {'system': 'erp', 'object_type': 'invoice', 'external_id': m.e_record_id}] AS refs
FROM invoice_match m, params p
WHERE m.in_billing AND m.in_erp AND m.b_currency IS DISTINCT FROM m.e_currency
  AND (p.period IS NULL OR m.b_period = p.period)
