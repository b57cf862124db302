from typing import Self

from pydantic import Field, field_validator, model_validator

from lineage.enums import Role
from orchestrator.client.catalog import SLA_S
from orchestrator.client.queue import QueueSettings

# Public-key algorithms only: "none" and the HMAC family (HS*) would let anyone holding the
# issuer's public key, or nothing at all, mint a token.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class ApiSettings(QueueSettings):
    """Settings of `concord api`; every field is CONCORD_<NAME> in the environment."""

    # Empty means the Stripe endpoint refuses everything: an unsigned intake is never open.
    stripe_webhook_secret: str = ""
    # The HubSpot app's client secret, which signs X-HubSpot-Signature-v3; empty refuses all.
    hubspot_client_secret: str = ""
    # The URL HubSpot posts to, when a proxy makes it differ from what this process sees.
    public_base_url: str = ""
    webhook_tolerance_s: int = 300
    max_body_bytes: int = 256 * 1024

    # The API's own PostgreSQL pool (the worker keeps lineage.db's defaults). A request waits at
    # most `database_pool_timeout_s` for a connection, then gets 503 with Retry-After: a webhook
    # sender retries later instead of holding on for a 500 after SQLAlchemy's 30 s.
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pool_timeout_s: float = Field(default=5.0, gt=0)

    # Mutating control-plane calls, per API key: a token bucket of `burst` tokens refilled at
    # `rate_per_minute`. A burst of replays beyond it gets 429 with Retry-After.
    mutation_rate_per_minute: float = Field(default=60.0, gt=0)
    mutation_burst: int = Field(default=20, ge=1)

    # The blast radius of one bulk replay; a larger set must be split by filter.
    bulk_replay_max: int = Field(default=500, ge=1)
    bulk_replay_batch: int = Field(default=50, ge=1)
    bulk_replay_lease_s: int = Field(default=60, ge=5)

    # SLA targets per workflow, in seconds: the same table the workflow definitions use.
    sla_targets_s: dict[str, float] = Field(
        default_factory=lambda: {w.value: float(s) for w, s in SLA_S.items()}
    )
    sla_default_target_s: float = 300.0
    # GET /metrics computes its transaction and SLA figures at most this often
    # (api.shared_readings); 0 computes them on every scrape.
    metrics_max_age_s: float = Field(default=15.0, ge=0)
    # GET /v1/sla/summary and /timeseries: the same, per set of query parameters; a request
    # with Cache-Control: no-cache always gets figures read after it arrived.
    sla_max_age_s: float = Field(default=15.0, ge=0)
    # A set of SLA parameters asked for within this long is read again in the background
    # before its reading expires (api.shared_readings), so the dashboard's next visitor does not
    # wait for the whole window to be read; 0 turns that off. The cost: while it lasts, one
    # reading per max age of each of the (at most eight) most recently asked sets.
    sla_keep_warm_s: float = Field(default=3600.0, ge=0)

    # OpenID Connect bearer tokens (api.oidc). An empty issuer turns OIDC off: only API keys.
    oidc_issuer: str = ""
    # The `aud` a token must carry: the client ID the dashboard signs in with, or the API's own
    # audience if the identity provider issues JWT access tokens for it. Required with an issuer.
    oidc_audience: str = ""
    # Empty: read `jwks_uri` from {issuer}/.well-known/openid-configuration on first use.
    oidc_jwks_url: str = ""
    # The claim that names the role; a dotted path reaches into objects (realm_access.roles).
    # Its value is a string or a list of strings.
    oidc_role_claim: str = "concord_role"
    # Claim value -> role, for a groups claim. Empty: the values must be role names themselves.
    oidc_role_map: dict[str, Role] = Field(default_factory=dict)
    # The claim shown as the actor (`oidc:<value>`); the subject (`sub`) when it is missing.
    oidc_actor_claim: str = "email"
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    # Clock skew allowed on exp, nbf and iat, in seconds.
    oidc_leeway_s: int = Field(default=30, ge=0, le=300)
    # The fetched key set is kept this long; an unknown `kid` refetches it at most once per
    # cooldown, so a stream of made-up kids cannot hammer the identity provider.
    oidc_jwks_cache_s: float = Field(default=300.0, gt=0)
    oidc_jwks_refresh_cooldown_s: float = Field(default=30.0, ge=0)
    oidc_http_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("oidc_algorithms")
    @classmethod
    def _public_key_algorithms_only(cls, value: list[str]) -> list[str]:
        refused = sorted(set(value) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise ValueError(
                f"not allowed for OIDC tokens: {', '.join(refused)}; "
                f"choose from {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )
        return value

    @model_validator(mode="after")
    def _issuer_needs_audience(self) -> Self:
        if self.oidc_issuer and not self.oidc_audience:
            # Without an audience check, any token the issuer signs for any app would do.
            raise ValueError("CONCORD_OIDC_AUDIENCE is required when CONCORD_OIDC_ISSUER is set")
        return self

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)
