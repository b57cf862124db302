from orchestrator.client.queue import QueueSettings


class ApiSettings(QueueSettings):
    """Settings of `concord api`; every field is CONCORD_<NAME> in the environment."""

    # Empty means the Stripe endpoint refuses everything: an unsigned intake is never open.
    stripe_webhook_secret: str = ""
    webhook_tolerance_s: int = 300
    max_body_bytes: int = 256 * 1024
