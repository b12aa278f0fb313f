"""rate_limit: at most ``rate`` events per ``per`` seconds, by waiting (never by dropping)."""

from __future__ import annotations

import asyncio
import time

from pydantic import Field

from ..core.batch import Batch
from ..core.registry import TRANSFORMS
from ..core.stage import Transform, TransformConfig


class RateLimitConfig(TransformConfig):
    rate: float = Field(gt=0, description="events allowed per `per` seconds")
    per: float = Field(1.0, gt=0, description="the period `rate` is counted over, in seconds")
    burst: int | None = Field(None, ge=1, description="bucket size: events that may pass at once after "
                                                      "an idle spell (default: `rate`, at least 1)")


@TRANSFORMS.register("rate_limit")
class RateLimit(Transform[RateLimitConfig]):
    """Token bucket applied per batch.

    A batch takes one token per event. When the bucket holds fewer tokens than
    the batch has events, the stage sleeps until the last of them has accrued
    and then passes the whole batch, so by any time ``t`` at most
    ``burst + rate * t / per`` events have left. A batch larger than the bucket
    waits for its whole deficit. Waiting holds the input channel, which applies
    backpressure upstream; nothing is dropped.
    """

    def setup(self) -> None:
        cfg = self.config
        self.per_second = cfg.rate / cfg.per
        self.bucket_size = float(cfg.burst if cfg.burst is not None else max(1, round(cfg.rate)))
        self.tokens = self.bucket_size
        #: Monotonic clock and sleep, replaceable in tests.
        self.clock = time.monotonic
        self.sleep = asyncio.sleep
        self._last: float | None = None

    async def process(self, batch: Batch) -> Batch:
        now = self.clock()
        if self._last is not None:
            self.tokens = min(self.bucket_size, self.tokens + (now - self._last) * self.per_second)
        self._last = now
        self.tokens -= len(batch.messages)
        if self.tokens < 0:
            # the tokens in debt accrue during the sleep; the next refill starts from `now`
            await self.sleep(-self.tokens / self.per_second)
        return batch
