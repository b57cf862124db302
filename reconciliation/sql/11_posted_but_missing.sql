-- Concord's lineage says the invoice was posted; the ERP holds no record of it.
SELECT 'posted_but_missing' AS kind, m.invoice_id AS match_key,
       coalesce(m.b_period, m.l_period) AS period, 'erp' AS system,
       'concord' AS source_system, m.invoice_id AS source_id, m.l_amount AS source_amount_minor,
       m.l_currency AS source_currency, 'posted' AS source_status,
       'erp' AS target_system, array_to_string(m.l_record_ids, ',') AS target_id,
       coalesce(m.b_amount, m.l_amount, 0) AS amount_at_risk_minor,
       coalesce(m.b_currency, m.l_currency) AS currency,
       m.correlation_ids,
       list_concat(
           [{'system': 'billing', 'object_type': 'invoice', 'external_id': m.invoice_id}],
           list_transform(m.l_record_ids,
               lambda r: {'system': 'erp', 'object_type': 'invoice', 'external_id': r})
       ) AS refs
FROM invoice_match m, params p
WHERE m.posted AND NOT m.in_erp
  AND (p.period IS NULL OR coalesce(m.b_period, m.l_period) = p.period)
