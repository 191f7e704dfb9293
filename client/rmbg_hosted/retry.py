"""The one retry policy: tenacity does the looping, this module says how long to wait and when to stop.

Everything that tries again (the client on a model reloading, the Triton pool, the job store,
webhook delivery) builds its loop here, so every backoff in the project has the same shape:
exponential from ``base_s``, capped at ``max_s``, with half of each delay jittered so replicas that
failed together do not retry together; a server's own ``Retry-After`` wins when it is within the cap.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
)


def delay(attempt: int, base_s: float, max_s: float, retry_after: str | float | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): ``base * 2**(attempt-1)`` capped, the upper half jittered."""
    if retry_after is not None and str(retry_after).strip().replace(".", "", 1).isdigit():
        return min(float(retry_after), max_s)
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class Backoff:
    """A tenacity ``wait``: ``delay`` for the attempt, honouring a Retry-After the outcome carries.

    ``retry_after(outcome)`` reads it from what the attempt returned or raised (None: none asked).
    """

    def __init__(self, base_s: float, max_s: float,
                 retry_after: Callable[[Any], str | float | None] | None = None) -> None:
        self.base_s, self.max_s, self.retry_after = base_s, max_s, retry_after

    def __call__(self, state: RetryCallState) -> float:
        asked = None
        if self.retry_after is not None and state.outcome is not None:
            outcome = state.outcome.exception() if state.outcome.failed else state.outcome.result()
            asked = self.retry_after(outcome)
        return delay(state.attempt_number, self.base_s, self.max_s, asked)


def _options(attempts: int | None, base_s: float, max_s: float, *,
             on_error: Callable[[BaseException], bool] | None, on_result: Callable[[Any], bool] | None,
             retry_after: Callable[[Any], str | float | None] | None,
             log: Callable[[RetryCallState], None] | None, deadline_s: float | None = None) -> dict[str, Any]:
    retry = retry_if_exception(on_error or (lambda _: False))
    if on_result is not None:
        retry = retry | retry_if_result(on_result)
    stop = stop_never if attempts is None else stop_after_attempt(attempts)
    if deadline_s is not None:
        stop = stop_after_delay(deadline_s) if attempts is None else stop | stop_after_delay(deadline_s)
    return {"stop": stop,
            "wait": Backoff(base_s, max_s, retry_after), "retry": retry, "reraise": True,
            "retry_error_callback": (lambda state: state.outcome.result()) if on_result is not None else None,
            "before_sleep": log}


def retrying(attempts: int | None, base_s: float, max_s: float, *,
             on_error: Callable[[BaseException], bool] | None = None, on_result: Callable[[Any], bool] | None = None,
             retry_after: Callable[[Any], str | float | None] | None = None,
             log: Callable[[RetryCallState], None] | None = None) -> Retrying:
    """A synchronous retry policy: ``retrying(...)(fn, *args)`` calls ``fn`` until it succeeds or gives up.

    ``attempts`` None retries until ``on_error``/``on_result`` stop asking for it. An error that
    ``on_error`` does not accept is raised at once; after the last attempt the last error is raised
    (or, with ``on_result``, the last result returned).
    """
    return Retrying(**_options(attempts, base_s, max_s, on_error=on_error, on_result=on_result,
                               retry_after=retry_after, log=log))


def async_retrying(attempts: int | None, base_s: float, max_s: float, *,
                   on_error: Callable[[BaseException], bool] | None = None,
                   on_result: Callable[[Any], bool] | None = None,
                   retry_after: Callable[[Any], str | float | None] | None = None,
                   log: Callable[[RetryCallState], None] | None = None,
                   sleep: Callable[[float], Awaitable[None]] | None = None,
                   deadline_s: float | None = None) -> AsyncRetrying:
    """``retrying`` for asyncio code: ``await async_retrying(...)(coroutine_fn, *args)``.

    ``sleep`` replaces ``asyncio.sleep`` (e.g. one that returns early when a server stops);
    ``deadline_s`` stops retrying once that long has passed since the first attempt.
    """
    options = _options(attempts, base_s, max_s, on_error=on_error, on_result=on_result, retry_after=retry_after,
                       log=log, deadline_s=deadline_s)
    return AsyncRetrying(**options, **({"sleep": sleep} if sleep else {}))
