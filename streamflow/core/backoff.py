"""`Backoff`: the one retry schedule of streamflow — exponential, capped, with jitter.

Every retry uses it: a stage's ``on_error: retry`` policy, a failing sink
write (``settings.sink_retry``), the Kafka sink re-sending failed records and
the HTTP sink re-posting a batch. In YAML it is a mapping of the three keys
below wherever a retry is configured.
"""

from __future__ import annotations

import random

from pydantic import ConfigDict, Field

from .configs import ConfigModel


class Backoff(ConfigModel):
    """How often and how long to wait between attempts of one operation.

    The wait before retry number ``n`` (1-based) is drawn uniformly from
    ``[cap / 2, cap]`` with ``cap = min(max_backoff, backoff * 2 ** (n - 1))``:
    exponential growth, a ceiling, and jitter so that many failing callers do
    not retry in step.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff: float = Field(0.2, ge=0, description="first retry delay in seconds")
    max_backoff: float = Field(30.0, ge=0, description="cap of the retry delay")
    max_attempts: int | None = Field(None, ge=1, description="total attempts, the first included; "
                                                            "null retries until it succeeds or shutdown")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap) if cap > 0 else 0.0

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` attempts were made and no more are allowed."""
        return self.max_attempts is not None and attempts >= self.max_attempts
