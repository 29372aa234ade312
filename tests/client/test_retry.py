import pytest

from modelport.errors import InferenceTimeout, InvalidInput, ModelNotFound, ServerError, ServerUnavailable
from modelport.retry import RetryPolicy, is_retryable, send_with_retry, send_with_retry_async

UNAVAILABLE = ServerUnavailable("cannot reach the server")
STUB_DOWN = ServerError("digits: Stub process 'digits_0_0' is not healthy.")


def scripted(*rounds):
    """A send() that answers round i with rounds[i] (one outcome per pending chunk) and records what it was sent."""
    calls = []

    def send(chunks):
        calls.append(list(chunks))
        return rounds[len(calls) - 1]
    return send, calls


def test_unavailable_servers_and_crashed_backends_are_retried():
    assert is_retryable(UNAVAILABLE) and is_retryable(STUB_DOWN)


@pytest.mark.parametrize("status, retried", [
    ("429", True), ("502", True), ("503", True), ("StatusCode.UNAVAILABLE", True),
    ("StatusCode.RESOURCE_EXHAUSTED", True),
    ("400", False), ("403", False), ("404", False), ("408", False), ("StatusCode.INVALID_ARGUMENT", False),
])
def test_overload_statuses_are_retried_and_other_4xx_are_not_as_the_readme_says(status, retried):
    from tritonclient.utils import InferenceServerException

    from modelport.errors import from_exception

    error = from_exception(InferenceServerException(msg="server says no", status=status))
    send, calls = scripted([error], ["ok"])
    if retried:
        assert send_with_retry(send, ["a"], RetryPolicy(retries=1), sleep=lambda s: None) == ["ok"]
    else:
        with pytest.raises(type(error)):
            send_with_retry(send, ["a"], RetryPolicy(retries=1), sleep=lambda s: None)
    assert len(calls) == (2 if retried else 1)


@pytest.mark.parametrize("error", [InvalidInput("bad shape"), ModelNotFound("nope"), InferenceTimeout("slow"),
                                   ServerError("division by zero in model.py")])
def test_caller_errors_timeouts_and_other_server_errors_are_not_retried(error):
    send, calls = scripted([error], ["ok"])
    with pytest.raises(type(error)):
        send_with_retry(send, ["a"], RetryPolicy(retries=3), sleep=lambda s: None)
    assert len(calls) == 1


def test_only_failed_chunks_are_resent_and_results_keep_their_order():
    send, calls = scripted(["A", UNAVAILABLE, "C", STUB_DOWN], ["B", "D"])
    results = send_with_retry(send, ["a", "b", "c", "d"], RetryPolicy(retries=2), sleep=lambda s: None)
    assert results == ["A", "B", "C", "D"]
    assert calls == [["a", "b", "c", "d"], ["b", "d"]]


def test_the_last_error_is_raised_after_the_retries_run_out():
    send, calls = scripted([UNAVAILABLE], [UNAVAILABLE], [UNAVAILABLE])
    with pytest.raises(ServerUnavailable, match=r"gave up after 3 attempts") as caught:
        send_with_retry(send, ["a"], RetryPolicy(retries=2), sleep=lambda s: None)
    assert len(calls) == 3 and caught.value.attempts == 3


def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_full():
    policy = RetryPolicy(retries=6, base_delay_s=0.1, max_delay_s=0.5)
    assert [policy.delay_s(n, rng=lambda: 1.0) for n in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert [policy.delay_s(n, rng=lambda: 0.0) for n in range(3)] == [0.05, 0.1, 0.2]


def test_waits_between_attempts_follow_the_policy():
    waits = []
    send, _ = scripted([UNAVAILABLE], [UNAVAILABLE], ["ok"])
    send_with_retry(send, ["a"], RetryPolicy(retries=3, base_delay_s=0.1, max_delay_s=1.0), sleep=waits.append)
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2


def test_a_policy_with_a_negative_retry_count_is_refused():
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RetryPolicy(retries=-1)


async def test_the_async_variant_retries_the_same_way():
    rounds = [[UNAVAILABLE, "B"], ["A"]]
    calls = []

    async def send(chunks):
        calls.append(list(chunks))
        return rounds[len(calls) - 1]

    async def no_wait(_):
        pass
    assert await send_with_retry_async(send, ["a", "b"], RetryPolicy(retries=1), sleep=no_wait) == ["A", "B"]
    assert calls == [["a", "b"], ["a"]]
