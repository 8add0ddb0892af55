"""The official OpenAI and Anthropic Python SDKs against a running Gatehouse.

Run by tests/api/sdk.rs with GATEHOUSE_URL and GATEHOUSE_TOKEN set; the
gateway routes `oa/*` to a fake OpenAI-compatible provider and `an/*` to a
fake Anthropic one. Prints `FIRST` after the first streamed chunk of
`oa/hold` and waits for the test to release the rest. Exits non-zero on the
first failed check.
"""

import os
import sys

import anthropic
import openai

URL = os.environ["GATEHOUSE_URL"]
TOKEN = os.environ["GATEHOUSE_TOKEN"]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def openai_sdk():
    client = openai.OpenAI(base_url=f"{URL}/v1", api_key=TOKEN, max_retries=0)
    ids = [m.id for m in client.models.list()]
    check("oa/m1" in ids and "an/claude-x" in ids, f"models.list sees both providers: {ids}")

    r = client.chat.completions.create(
        model="oa/m1", messages=[{"role": "user", "content": "hi sdk"}]
    )
    check(r.choices[0].message.content == "echo: hi sdk", "chat.completions.create")
    check(r.usage.total_tokens == 18, "usage comes back")

    raw = client.chat.completions.with_raw_response.create(
        model="oa/m1", messages=[{"role": "user", "content": "x"}]
    )
    check(float(raw.headers["x-gatehouse-overhead-ms"]) >= 0, "the overhead header is there")

    stream = client.chat.completions.create(
        model="oa/m1", stream=True, messages=[{"role": "user", "content": "hi sdk"}]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == "echo: hi sdk", f"a streamed chat: {text!r}")
    check(all(c.choices for c in chunks), "no usage chunk the client did not ask for")

    stream = client.chat.completions.create(
        model="oa/m1",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}],
    )
    last = list(stream)[-1]
    check(last.usage is not None and last.usage.total_tokens == 18, "the usage chunk when asked")

    # Incremental: the first chunk arrives while the upstream holds the rest.
    stream = client.chat.completions.create(
        model="oa/hold", stream=True, messages=[{"role": "user", "content": "wait"}]
    )
    it = iter(stream)
    first = next(it)
    check(first.choices[0].delta.content == "echo: ", "the first chunk came alone")
    print("FIRST", flush=True)
    rest = "".join(c.choices[0].delta.content or "" for c in it if c.choices)
    check(rest == "wait", f"the rest after the release: {rest!r}")

    # Translated: an Anthropic provider behind the OpenAI surface.
    r = client.chat.completions.create(
        model="an/claude-x", messages=[{"role": "user", "content": "hi claude"}]
    )
    check(r.choices[0].message.content == "echo: hi claude", "chat to an Anthropic provider")
    stream = client.chat.completions.create(
        model="an/claude-x", stream=True, messages=[{"role": "user", "content": "s"}]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    check(text == "echo: s", f"streamed chat to an Anthropic provider: {text!r}")

    e = client.embeddings.create(model="oa/m1", input="hello")
    check(e.data[0].embedding == [0.25, -0.5, 1.0], "embeddings.create")

    try:
        client.chat.completions.create(model="oa/nope", messages=[{"role": "user", "content": "x"}])
        check(False, "an unknown model is refused")
    except openai.NotFoundError as err:
        check(err.code == "model_not_found", "an unknown model is a NotFoundError(model_not_found)")
    try:
        openai.OpenAI(base_url=f"{URL}/v1", api_key="gh_wrong", max_retries=0).models.list()
        check(False, "a bad token is refused")
    except openai.AuthenticationError:
        check(True, "a bad token is an AuthenticationError")
    try:
        client.chat.completions.create(model="oa/fail-500", messages=[{"role": "user", "content": "x"}])
        check(False, "a failing provider is an error")
    except openai.APIStatusError as err:
        check(err.status_code == 502 and "10.1.2.3" not in str(err), "a failing provider is a clean 502")


def anthropic_sdk():
    client = anthropic.Anthropic(base_url=URL, api_key=TOKEN, max_retries=0)
    for model in ["an/claude-x", "oa/m1"]:
        m = client.messages.create(
            model=model,
            max_tokens=64,
            system="be brief",
            messages=[{"role": "user", "content": "hi anthropic"}],
        )
        check(m.content[0].text == "echo: hi anthropic", f"messages.create via {model}")
        check(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"usage via {model}")
        with client.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "streamed"}]
        ) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        check(text == "echo: streamed", f"messages.stream via {model}: {text!r}")
        check(final.stop_reason == "end_turn", f"stop reason via {model}")
    try:
        client.messages.create(model="an/nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        check(False, "an unknown model is refused")
    except anthropic.NotFoundError:
        check(True, "an unknown model is a NotFoundError")


openai_sdk()
anthropic_sdk()
print("ALL OK", flush=True)
