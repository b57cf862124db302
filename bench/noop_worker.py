"""The baseline worker: bare arq, a no-op job, the same queue options as Concord's worker.

python -m bench.noop_worker            # reads CONCORD_REDIS_URL
"""

import os
import sys
from typing import Any

from arq import func
from arq.worker import Worker

from orchestrator.client.queue import redis_settings
from orchestrator.event_loop import use_uvloop
from orchestrator.settings import OrchestratorSettings

QUEUE = "bench:noop"
# The baseline runs as many jobs at once and polls as often as Concord's worker by default, so
# the ratio measures what Concord adds per job and nothing else.
MAX_JOBS = OrchestratorSettings.model_fields["max_jobs"].default
DEFAULT_POLL_DELAY_S: float = OrchestratorSettings.model_fields["poll_delay_s"].default


async def noop(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> None:
    del ctx, args, kwargs  # nothing to do: the baseline is arq's own cost per job


def build(poll_delay_s: float = DEFAULT_POLL_DELAY_S) -> Worker:
    return Worker(
        functions=[func(noop, name="noop", keep_result=0)],
        redis_settings=redis_settings(os.environ["CONCORD_REDIS_URL"]),
        queue_name=QUEUE,
        max_jobs=MAX_JOBS,
        keep_result=0,
        health_check_interval=1,
        poll_delay=poll_delay_s,
    )


if __name__ == "__main__":
    use_uvloop()  # the event loop Concord's worker runs on, so that only the job differs
    build(float(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_POLL_DELAY_S).run()
