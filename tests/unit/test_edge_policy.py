"""The one outbound policy: classification, Retry-After, circuit breaker, rate limiter."""

from __future__ import annotations

import httpx
import pytest
import trio

from adapters.edges import EdgeCallFailed
from adapters.policy import CircuitBreaker, EdgeHttp, RateLimiter, check, retry_after


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x"))


@pytest.mark.parametrize(("status", "retry", "auth"), [
    (429, True, False), (500, True, False), (503, True, False), (408, True, False),
    (400, False, False), (404, False, False), (401, False, True), (403, False, True),
])
def test_statuses_are_classified(status: int, retry: bool, auth: bool) -> None:
    """429/5xx are retryable, other 4xx are not; 401/403 are flagged as auth failures."""
    with pytest.raises(EdgeCallFailed) as failed:
        check(response(status), "call")
    assert (failed.value.retry, failed.value.auth, failed.value.status) == (retry, auth, status)


def test_success_passes() -> None:
    """A 2xx raises nothing."""
    check(response(204), "call")


def test_retry_after_seconds_and_dates_are_read_and_capped() -> None:
    """Retry-After in seconds or as an HTTP date; capped; absent or junk is None."""
    assert retry_after({"Retry-After": "7"}) == 7
    assert retry_after({"retry-after": "100000"}, cap=60) == 60
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None
    with pytest.raises(EdgeCallFailed) as failed:
        check(response(429, {"Retry-After": "3"}), "call")
    assert failed.value.retry_after == 3


async def test_breaker_opens_after_failures_and_closes_after_cooldown(
        autojump_clock: trio.testing.MockClock) -> None:
    """N retryable failures open the breaker (fail fast, retryable); after the cooldown a
    trial call may go, and a success closes it."""
    breaker = CircuitBreaker(failures=3, cooldown=10)
    for _ in range(3):
        breaker.before("acct")
        breaker.after(failed=True)
    assert breaker.open
    with pytest.raises(EdgeCallFailed) as refused:
        breaker.before("acct")
    assert refused.value.retry
    await trio.sleep(10)
    breaker.before("acct")
    breaker.after(failed=False)
    assert not breaker.open


async def test_rate_limiter_spaces_calls(autojump_clock: trio.testing.MockClock) -> None:
    """At 5 calls a second (burst 5), 15 calls take about 2 seconds."""
    limiter = RateLimiter(5, burst=5)
    began = trio.current_time()
    for _ in range(15):
        await limiter.acquire()
    assert trio.current_time() - began == pytest.approx(2, abs=0.05)


async def test_edge_http_counts_auth_failures_and_maps_network_errors() -> None:
    """401 counts as an auth failure; a connection error is a retryable failure."""
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(401)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        http = EdgeHttp(client)
        with pytest.raises(EdgeCallFailed) as denied:
            await http.request("acct", "GET", "http://edge/secret", what="secret")
        assert denied.value.auth
        assert http.auth_failures == 1
        with pytest.raises(EdgeCallFailed) as down:
            await http.request("acct", "GET", "http://edge/down", what="down")
        assert down.value.retry


async def test_breaker_is_half_open_with_one_trial_call(
        autojump_clock: trio.testing.MockClock) -> None:
    """After the cooldown exactly one trial call goes through; the calls that come while
    it is in flight still fail fast, so a provider that is still down sees one call."""
    breaker = CircuitBreaker(failures=2, cooldown=1.0)
    for _ in range(2):
        breaker.before("acct")
        breaker.after(failed=True)
    await trio.sleep(1.0)
    breaker.before("acct")  # the trial
    with pytest.raises(EdgeCallFailed):
        breaker.before("acct")  # a second caller while the trial is out
    breaker.after(failed=False)
    breaker.before("acct")
    breaker.after(failed=False)
    assert not breaker.open


async def test_breaker_cooldown_starts_short_and_doubles_up_to_its_cap(
        autojump_clock: trio.testing.MockClock) -> None:
    """The first cooldown is about a second; each failed trial doubles it, up to the cap;
    a success resets it, so the next outage starts short again."""
    breaker = CircuitBreaker(failures=1, cooldown=1.0, max_cooldown=4.0)
    breaker.before("acct")
    breaker.after(failed=True)
    cooldowns = []
    for _ in range(4):
        began = trio.current_time()
        while True:
            try:
                breaker.before("acct")
                break
            except EdgeCallFailed as refusal:
                await trio.sleep(refusal.retry_after or 0.0)
        cooldowns.append(trio.current_time() - began)
        breaker.after(failed=True)
    assert cooldowns == [pytest.approx(c) for c in (1.0, 2.0, 4.0, 4.0)]
    await trio.sleep(4.0)
    breaker.before("acct")
    breaker.after(failed=False)
    breaker.before("acct")
    breaker.after(failed=True)
    with pytest.raises(EdgeCallFailed) as refused:
        breaker.before("acct")
    assert refused.value.retry_after == pytest.approx(1.0)


async def test_a_four_second_outage_costs_about_a_second_after_recovery(
        autojump_clock: trio.testing.MockClock) -> None:
    """A poller calling every 0.5 s through the default breaker: the provider answers
    500 for 4 s; the first call that gets through after it is back comes within ~2 poll
    intervals of the recovery (with a fixed 30 s cooldown it came 30 s late)."""
    recovered_at = 4.0
    began = trio.current_time()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if trio.current_time() - began < recovered_at else 200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        http = EdgeHttp(client)
        while True:
            try:
                await http.request("acct", "GET", "http://edge/poll", what="poll")
                break
            except EdgeCallFailed:
                await trio.sleep(0.5)
    late = trio.current_time() - began - recovered_at
    assert 0 <= late <= 1.0 + 1e-6


async def test_a_cancelled_trial_frees_the_half_open_slot(
        autojump_clock: trio.testing.MockClock) -> None:
    """A trial call abandoned before it answers (e.g. cancelled) does not keep the
    breaker refusing: the next caller becomes the trial."""
    breaker = CircuitBreaker(failures=1, cooldown=1.0)
    breaker.before("acct")
    breaker.after(failed=True)
    await trio.sleep(1.0)
    breaker.before("acct")
    breaker.abandon()
    breaker.before("acct")
    breaker.after(failed=False)
    assert not breaker.open


async def test_edge_http_releases_the_trial_of_a_cancelled_call(
        autojump_clock: trio.testing.MockClock) -> None:
    """EdgeHttp abandons the trial when its call is cancelled."""
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(100)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        http = EdgeHttp(client, breaker_failures=1, breaker_cooldown=1.0, timeout=1000)
        http.breaker("acct").before("acct")
        http.breaker("acct").after(failed=True)
        await trio.sleep(1.0)
        with trio.move_on_after(1):
            await http.request("acct", "GET", "http://edge/slow", what="slow")
        http.breaker("acct").before("acct")  # not refused: the slot is free again
