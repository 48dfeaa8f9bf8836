"""The official OpenAI and Anthropic Python SDKs, unchanged, against a running Keyward.

Run by the Rust test `public_api::sdk_*` (server/tests/api/sdk.rs), which starts Keyward and
the mock provider, creates a workspace with OpenAI and Anthropic keys and a token, and passes:
  KEYWARD_URL    the server's base URL
  KEYWARD_TOKEN  a workspace API token with the chat and models scopes
"""

import os

import anthropic
import openai
import pytest

URL = os.environ["KEYWARD_URL"]
TOKEN = os.environ["KEYWARD_TOKEN"]


@pytest.fixture
def oai():
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=TOKEN, max_retries=0)


@pytest.fixture
def ant():
    return anthropic.Anthropic(base_url=URL, api_key=TOKEN, max_retries=0)


# --- OpenAI SDK ------------------------------------------------------------------------------


def test_openai_chat(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model="openai/mock-small",
        messages=[{"role": "user", "content": "hello from the sdk"}],
    )
    assert raw.headers["x-keyward-key-source"] == "workspace"
    assert int(raw.headers["x-keyward-overhead-us"]) >= 0
    done = raw.parse()
    assert done.choices[0].message.content == "You said: hello from the sdk"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.prompt_tokens == 4


def test_openai_bare_model_goes_to_the_default_provider(oai):
    done = oai.chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "bare id"}]
    )
    assert done.choices[0].message.content == "You said: bare id"


def test_openai_stream(oai):
    pieces = []
    usage = None
    for chunk in oai.chat.completions.create(
        model="openai/mock-small",
        messages=[{"role": "user", "content": "stream this back"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    assert "".join(pieces) == "You said: stream this back"
    assert len(pieces) > 3
    assert usage is not None and usage.completion_tokens == 5


def test_openai_models(oai):
    ids = [m.id for m in oai.models.list()]
    assert "openai/mock-small" in ids
    assert "anthropic/mock-small" in ids


def test_openai_errors(oai):
    bad = openai.OpenAI(base_url=f"{URL}/v1", api_key="kw_" + "A" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(
            model="openai/mock-small", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(
            model="groq/llama-3.1-8b-instant", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.code == "no_key"
    assert "groq" in e.value.message


# --- Anthropic SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["anthropic/mock-small", "openai/mock-small"])
def test_anthropic_messages(ant, model):
    msg = ant.messages.create(
        model=model,
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hi claude"}],
    )
    assert msg.content[0].text == "[system: be brief] You said: hi claude"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["anthropic/mock-small", "openai/mock-small"])
def test_anthropic_stream(ant, model):
    with ant.messages.stream(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": "stream it please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "You said: stream it please"
    assert final.content[0].text == text
    assert final.usage.output_tokens == 5


def test_anthropic_models(ant):
    ids = [m.id for m in ant.models.list()]
    assert "anthropic/mock-small" in ids


def test_anthropic_errors(ant):
    bad = anthropic.Anthropic(base_url=URL, api_key="kw_" + "B" * 43, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(
            model="openai/mock-small",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.create(
            model="openai/mock-small",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}],
        )


# --- The management API's OpenAPI document ----------------------------------------------------


def test_openapi_document_validates():
    import json
    import urllib.request

    from openapi_spec_validator import validate

    with urllib.request.urlopen(f"{URL}/api/v1/openapi.json") as res:
        doc = json.load(res)
    validate(doc)  # raises on any violation of the OpenAPI 3.1 specification
    assert doc["openapi"] == "3.1.0"
    assert "/api/v1/workspaces/{workspace}/tokens" in doc["paths"]
