"""Rated usage: one metered event in, one summary per subscription and period out.

Usage arrives at high volume, so an event is not a transaction: intake stores it as a usage
record, and the aggregation job (orchestrator.usage) turns each closed period's records into
one `usage_summary` transaction that posts to the ERP once.
"""

from datetime import UTC

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Large enough for any real meter, small enough that a summed period stays within BIGINT.
_MAX_QUANTITY = 10**12
_MAX_UNIT_MINOR = 10**9


class UsageRecorded(BaseModel):
    """A rated usage event (data of `com.concord.usage.recorded`); money in minor units."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: str = Field(min_length=1, max_length=255)
    customer_id: str = Field(min_length=1, max_length=255)
    metric: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    quantity: int = Field(ge=0, le=_MAX_QUANTITY)
    unit_amount_minor: int = Field(ge=0, le=_MAX_UNIT_MINOR)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    # A zone is required: a naive time could fall in either of two periods.
    occurred_at: AwareDatetime

    @property
    def amount_minor(self) -> int:
        return self.quantity * self.unit_amount_minor

    @property
    def period(self) -> str:
        return self.occurred_at.astimezone(UTC).strftime("%Y-%m")

    @property
    def usage_key(self) -> str:
        """The external ID of the summary that will count this event (UsageSummary.external_id)."""
        return f"usage:{self.subscription_id}:{self.period}:{self.currency}"


class Metered(BaseModel):
    """Intake's decision for a usage event: store it as usage, start no transaction."""

    usage: UsageRecorded


class UsageLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    quantity: int
    amount_minor: int
    events: int = Field(ge=1)


class UsageSummary(BaseModel):
    """One subscription's usage in one period and currency: the input of `usage_summary`.

    sequence 0 is the period's summary; 1, 2, ... are adjustments for usage that arrived
    after the summary was made (late usage is posted, never dropped).
    """

    model_config = ConfigDict(extra="forbid")

    subscription_id: str = Field(min_length=1, max_length=255)
    customer_id: str = Field(min_length=1, max_length=255)
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    sequence: int = Field(default=0, ge=0)
    lines: list[UsageLine] = Field(min_length=1)

    @property
    def amount_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def events(self) -> int:
        return sum(line.events for line in self.lines)

    @property
    def external_id(self) -> str:
        """The ERP document's external ID; the same summary always names the same document."""
        base = f"usage:{self.subscription_id}:{self.period}:{self.currency}"
        return base if self.sequence == 0 else f"{base}:late{self.sequence}"
