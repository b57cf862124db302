-- The run's bound values, in one row every rule cross-joins: period (NULL = every period in the
-- snapshots) and the default amount tolerance in minor units.
CREATE TEMP TABLE params AS SELECT CAST(? AS VARCHAR) AS period, CAST(? AS BIGINT) AS tolerance_minor
