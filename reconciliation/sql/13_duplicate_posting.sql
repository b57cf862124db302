-- One billing invoice, more than one ERP invoice record: everything past the first is at risk.
SELECT 'duplicate_posting' AS kind, m.invoice_id AS match_key,
       coalesce(m.b_period, m.l_period, m.e_period) AS period, 'erp' AS system,
       'billing' AS source_system, m.invoice_id AS source_id, m.b_amount AS source_amount_minor,
       m.b_currency AS source_currency, m.b_status AS source_status,
       'erp' AS target_system, array_to_string(m.record_ids, ',') AS target_id,
       m.e_total AS target_amount_minor, m.e_currency AS target_currency,
       m.e_total - m.e_amount AS amount_at_risk_minor, m.e_currency AS currency,
       m.correlation_ids,
       list_concat(
           [{'system': 'billing', 'object_type': 'invoice', 'external_id': m.invoice_id}],
           list_transform(m.record_ids,
               lambda r: {'system': 'erp', 'object_type': 'invoice', 'external_id': r})
       ) AS refs
FROM invoice_match m, params p
WHERE m.e_records > 1 AND (m.in_billing OR m.in_lineage)
  AND (p.period IS NULL OR coalesce(m.b_period, m.l_period, m.e_period) = p.period)
