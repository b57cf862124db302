"""The analytics workflow port over Segment's Tracking API (orchestrator.connectors.segment)."""

from datetime import datetime

from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.connectors.segment import SegmentAnalytics, TrackEvent


class SegmentEvents:
    """Analytics over SegmentAnalytics: the customer is Segment's userId.

    No lookup exists or is needed: the messageId is the step's idempotency key, so repeating
    the step after an ambiguous outcome is deduplicated by Segment.
    """

    def __init__(self, segment: SegmentAnalytics) -> None:
        self._segment = segment

    async def track(
        self,
        *,
        user_id: str,
        event: str,
        properties: dict[str, object],
        timestamp: datetime | None,
        external_id: str,
        ctx: CallContext,
    ) -> TargetRecord:
        return await self._segment.track(
            TrackEvent(
                user_id=user_id,
                event=event,
                external_id=external_id,
                properties=properties,
                timestamp=timestamp,
            ),
            ctx=ctx,
        )

    async def aclose(self) -> None:
        await self._segment.aclose()
