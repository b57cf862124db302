-- An ERP invoice record that belongs to no billing invoice and no Concord transaction: posted
-- by hand, or by something other than Concord. One finding per record.
SELECT 'orphan_in_erp' AS kind, e.record_id AS match_key, e.period AS period, 'erp' AS system,
       'billing' AS source_system, e.invoice_id AS source_id,
       'erp' AS target_system, e.record_id AS target_id, e.amount_minor AS target_amount_minor,
       e.currency AS target_currency, e.status AS target_status,
       e.amount_minor AS amount_at_risk_minor, e.currency AS currency,
       CAST([] AS VARCHAR[]) AS correlation_ids,
       [{'system': 'erp', 'object_type': 'invoice', 'external_id': e.record_id}] AS refs
FROM erp_link e
LEFT JOIN invoice_match m ON m.invoice_id = e.invoice_id
CROSS JOIN params p
WHERE NOT coalesce(m.in_billing OR m.in_lineage, false)
  AND (p.period IS NULL OR e.period = p.period)
