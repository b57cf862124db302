from pydantic import Field

from orchestrator.client.catalog import SLA_S
from orchestrator.client.queue import QueueSettings


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
