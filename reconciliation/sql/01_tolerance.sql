-- A per-currency tolerance overrides the default (1 minor unit of JPY is not 1 cent of USD).
INSERT INTO tolerances VALUES (?, ?)
