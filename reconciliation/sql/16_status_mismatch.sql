-- Billing's invoice status against the ERP's (payments applied count as paid). Drafts have no
-- counterpart yet; an uncollectible invoice stays open in the ERP until it is written off. An
-- invoice credit notes cover in full is `credited`: the ERP must have closed it (a credit memo
-- applied shows it paid) or voided it. An ERP invoice left open only because its amount differs
-- from what billing billed and was paid (payments cover billing's amount) is the amount
-- mismatch's finding, not a second one with the whole invoice at risk.
SELECT 'status_mismatch' AS kind, m.invoice_id || '|' || m.e_record_id AS match_key,
       m.b_period AS period, 'erp' AS system,
       'billing' AS source_system, m.invoice_id AS source_id, m.b_amount AS source_amount_minor,
       m.b_currency AS source_currency,
       CASE WHEN m.b_credited THEN 'credited' ELSE m.b_status END AS source_status,
       'erp' AS target_system, m.e_record_id AS target_id, m.e_amount AS target_amount_minor,
       m.e_currency AS target_currency, m.e_status AS target_status,
       m.b_amount AS amount_at_risk_minor, m.b_currency AS currency,
       m.correlation_ids,
       [{'system': 'billing', 'object_type': 'invoice', 'external_id': m.invoice_id},
        {'system': 'erp', 'object_type': 'invoice', 'external_id': m.e_record_id}] AS refs
FROM invoice_match m, params p
WHERE m.in_billing AND m.in_erp AND m.b_status <> 'draft'
  AND CASE WHEN m.b_credited THEN coalesce(m.e_status NOT IN ('paid', 'voided'), true)
           ELSE m.e_status IS DISTINCT FROM CASE m.b_status
                WHEN 'open' THEN 'open' WHEN 'paid' THEN 'paid'
                WHEN 'uncollectible' THEN 'open' WHEN 'void' THEN 'voided' ELSE m.b_status END
      END
  AND NOT (m.b_status = 'paid' AND m.e_status = 'open' AND NOT m.b_credited
           AND m.b_amount IS DISTINCT FROM m.e_amount AND m.e_applied >= m.b_amount)
  AND (p.period IS NULL OR m.b_period = p.period)
