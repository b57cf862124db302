-- The CRM deal's amount against billing's contract value for the same subscription. Ended
-- subscriptions are left out: their deals are history, not receivables. Subscriptions are not
-- periodic, so a finding belongs to the period of the run that found it.
SELECT 'crm_contract_value_mismatch' AS kind, d.deal_id || '|' || s.subscription_id AS match_key,
       p.period AS period, 'crm' AS system,
       'billing' AS source_system, s.subscription_id AS source_id,
       s.contract_value_minor AS source_amount_minor, s.currency AS source_currency,
       s.status AS source_status,
       'crm' AS target_system, d.deal_id AS target_id, d.amount_minor AS target_amount_minor,
       d.currency AS target_currency,
       CASE WHEN d.currency = s.currency THEN abs(s.contract_value_minor - d.amount_minor)
            ELSE s.contract_value_minor END AS amount_at_risk_minor,
       s.currency AS currency,
       CAST([] AS VARCHAR[]) AS correlation_ids,
       [{'system': 'billing', 'object_type': 'subscription', 'external_id': s.subscription_id},
        {'system': 'crm', 'object_type': 'deal', 'external_id': d.deal_id}] AS refs
FROM crm_deals d
JOIN billing_subscriptions s ON s.subscription_id = d.subscription_id
LEFT JOIN tolerances t ON t.currency = s.currency
CROSS JOIN params p
WHERE coalesce(s.status, '') NOT IN ('canceled', 'incomplete_expired')
  AND (d.currency IS DISTINCT FROM s.currency
       OR abs(s.contract_value_minor - d.amount_minor)
          > coalesce(t.tolerance_minor, p.tolerance_minor))
