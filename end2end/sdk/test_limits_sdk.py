"""The official SDKs against Keyward's own limits: their retry on 429 with Retry-After works.

Run by the Rust test `limits::sdks_retry_on_limits`, which starts Keyward with a mock provider
that answers after 500 ms and passes:
  KEYWARD_URL           the server's base URL
  KEYWARD_ONE_AT_ONCE   a token limited to one request at once
  KEYWARD_NO_BUDGET     a token whose budget is spent (0 credits)
"""

import os
import threading
import time

import anthropic
import openai
import pytest

URL = os.environ["KEYWARD_URL"]
ONE = os.environ["KEYWARD_ONE_AT_ONCE"]
BROKE = os.environ["KEYWARD_NO_BUDGET"]
ASK = [{"role": "user", "content": "hi"}]


def two_at_once(call):
    """Runs `call` twice at once; returns each one's (result or exception, seconds taken)."""
    out = [None, None]

    def run(i):
        t = time.monotonic()
        try:
            out[i] = (call(), time.monotonic() - t)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out[i] = (e, time.monotonic() - t)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
        time.sleep(0.05)
    for th in threads:
        th.join()
    return out


def test_openai_retries_a_concurrency_refusal_after_retry_after():
    client = openai.OpenAI(base_url=f"{URL}/v1", api_key=ONE, max_retries=2)
    out = two_at_once(
        lambda: client.chat.completions.create(
            model="openai/mock-small", messages=ASK, max_tokens=10
        )
    )
    for result, _ in out:
        assert not isinstance(result, Exception), result
        assert result.choices[0].message.content == "You said: hi"
    # The second was refused while the first ran, waited Retry-After (1 s), and was served.
    assert max(t for _, t in out) >= 1.0


def test_anthropic_retries_a_concurrency_refusal_after_retry_after():
    client = anthropic.Anthropic(base_url=URL, api_key=ONE, max_retries=2)
    out = two_at_once(
        lambda: client.messages.create(
            model="openai/mock-small", messages=ASK, max_tokens=10
        )
    )
    for result, _ in out:
        assert not isinstance(result, Exception), result
        assert result.content[0].text == "You said: hi"
    assert max(t for _, t in out) >= 1.0


def test_a_spent_budget_is_not_retried():
    client = openai.OpenAI(base_url=f"{URL}/v1", api_key=BROKE, max_retries=2)
    t = time.monotonic()
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="openai/mock-small", messages=ASK, max_tokens=10)
    assert e.value.code == "insufficient_quota"
    assert e.value.response.headers.get("x-should-retry") == "false"
    # No retry: one answer, at once (a retry would wait at least the SDK's backoff).
    assert time.monotonic() - t < 0.5
    ant = anthropic.Anthropic(base_url=URL, api_key=BROKE, max_retries=2)
    with pytest.raises(anthropic.RateLimitError) as e:
        ant.messages.create(model="openai/mock-small", messages=ASK, max_tokens=10)
    assert e.value.body["error"]["type"] == "rate_limit_error"
