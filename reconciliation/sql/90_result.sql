-- The fingerprint names a difference across runs: its kind and the external ids it is about.
SELECT sha256(kind || ':' || match_key) AS fingerprint, kind, match_key, period, system,
       source_system, source_id, source_amount_minor, source_currency, source_status,
       target_system, target_id, target_amount_minor, target_currency, target_status,
       amount_at_risk_minor, currency, correlation_ids, refs
FROM findings
ORDER BY kind, match_key
