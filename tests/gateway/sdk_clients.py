"""The official OpenAI and Anthropic Python SDKs as clients of `arcllm serve`.

Usage: sdk_clients.py SCENARIO BASE_URL GATEWAY_KEY [ARGS...]

Each scenario makes its calls, checks what the SDK returned, and prints one JSON line of
what it observed for the Rust test to check against the fake vendors. A failed check
raises (non-zero exit). Versions are pinned in requirements.txt beside this file.
"""

import json
import sys
import threading

import anthropic
import openai

SCENARIO, BASE, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
ARGS = sys.argv[4:]

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def oai(**kw):
    return openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, **kw)


def ant(**kw):
    return anthropic.Anthropic(base_url=BASE, api_key=KEY, **kw)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def openai_text(model):
    r = oai().chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
    text = r.choices[0].message.content
    check(text.endswith("heard: hello there"), text)
    check(r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
    check(r.usage.completion_tokens == 7 and r.usage.prompt_tokens == 11, r.usage)
    return {"text": text, "usage": r.usage.model_dump(), "model": r.model}


def openai_stream(model):
    stream = oai().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check(text.endswith("heard: stream please"), text)
    check(finish == "stop", finish)
    check(usage is not None and usage.completion_tokens == 7, usage)
    return {"text": text, "usage": usage.model_dump()}


def openai_tools(model, stream=False):
    client = oai()
    messages = [{"role": "user", "content": "weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_OPENAI])
    call = first.choices[0].message.tool_calls[0]
    check(first.choices[0].finish_reason == "tool_calls", first.choices[0].finish_reason)
    check(call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, call)
    messages.append(first.choices[0].message)  # the SDK's own object, echoed back
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_OPENAI])
    check(second.choices[0].finish_reason == "stop", second.choices[0].finish_reason)
    return {"call_id": call.id, "text": second.choices[0].message.content}


def anthropic_text(model):
    r = ant().messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hello there"}])
    text = r.content[0].text
    check(text.endswith("heard: hello there"), text)
    check(r.stop_reason == "end_turn", r.stop_reason)
    check(r.usage.output_tokens == 7, r.usage)
    return {"text": text, "usage": r.usage.model_dump(), "model": r.model}


def anthropic_stream(model):
    with ant().messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "stream please"}]) as s:
        pieces = [t for t in s.text_stream]
        final = s.get_final_message()
    text = "".join(pieces)
    check(text.endswith("heard: stream please") and final.content[0].text == text, (text, final))
    check(final.stop_reason == "end_turn", final.stop_reason)
    check(final.usage.output_tokens == 7, final.usage)
    return {"text": text, "pieces": len(pieces), "usage": final.usage.model_dump()}


def anthropic_tools(model, stream=False):
    client = ant()
    messages = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=64, messages=messages, tools=[WEATHER_ANTHROPIC]) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=64, messages=messages, tools=[WEATHER_ANTHROPIC])
    check(first.stop_reason == "tool_use", first.stop_reason)
    use = [b for b in first.content if b.type == "tool_use"][0]
    check(use.name == "get_weather" and use.input == {"city": "Paris"}, use)
    messages.append({"role": "assistant", "content": first.content})  # the SDK's own blocks
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]})
    second = client.messages.create(model=model, max_tokens=64, messages=messages, tools=[WEATHER_ANTHROPIC])
    check(second.stop_reason == "end_turn", second.stop_reason)
    return {"tool_use_id": use.id, "text": second.content[0].text}


def expect(error_type, call):
    try:
        call()
    except error_type as e:
        status = getattr(e, "status_code", None)
        headers = dict(e.response.headers) if getattr(e, "response", None) is not None else {}
        return {"error": type(e).__name__, "status": status, "headers": headers, "message": str(e)}
    raise AssertionError(f"expected {error_type.__name__}")


def rate_limited():
    # Default SDK retries stay on: x-should-retry: false must stop them.
    return {
        "openai": expect(openai.RateLimitError, lambda: openai_text("vend_anthropic")),
        "anthropic": expect(anthropic.RateLimitError, lambda: anthropic_text("vend_openai")),
    }


def unauthorized():
    return {
        "openai": expect(openai.AuthenticationError, lambda: openai_text("vend_openai")),
        "anthropic": expect(anthropic.AuthenticationError, lambda: anthropic_text("vend_openai")),
    }


def too_large():
    big = "x" * 300_000
    return {
        "openai": expect(openai.APIStatusError, lambda: oai(max_retries=0).chat.completions.create(
            model="vend_openai", messages=[{"role": "user", "content": big}])),
        "anthropic": expect(anthropic.APIStatusError, lambda: ant(max_retries=0).messages.create(
            model="vend_openai", max_tokens=8, messages=[{"role": "user", "content": big}])),
    }


def overloaded():
    # One slow call takes the only slot (the queue is 0); the next is turned away.
    slow = threading.Thread(target=lambda: openai_text("vend_openai"))
    slow.start()
    import time
    time.sleep(0.5)
    result = {
        "openai": expect(openai.InternalServerError, lambda: oai(max_retries=0).chat.completions.create(
            model="vend_openai", messages=[{"role": "user", "content": "x"}])),
        "anthropic": expect(anthropic.APIStatusError, lambda: ant(max_retries=0).messages.create(
            model="vend_openai", max_tokens=8, messages=[{"role": "user", "content": "x"}])),
    }
    slow.join()
    return result


def stream_error():
    # A failure before the answer starts is an HTTP error, raised by the SDKs as such.
    return {
        "openai": expect(openai.RateLimitError, lambda: openai_stream("vend_openai")),
        "anthropic": expect(anthropic.RateLimitError, lambda: anthropic_stream("vend_openai")),
    }


FOX = [{"role": "user", "content": "Say the sentence about the fox."}]


def error_of(e):
    return {"type": type(e).__name__, "message": str(e)}


def openai_fox(model):
    """Streams an answer as an agent would, keeping every piece the SDK yields (and the
    error it raises, if any) for the test to check for duplicates and gaps."""
    pieces, roles, finish, usage, error = [], 0, None, None, None
    try:
        stream = oai().chat.completions.create(
            model=model, messages=FOX, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                roles += choice.delta.role is not None
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                finish = choice.finish_reason or finish
    except openai.APIError as e:
        error = error_of(e)
    return {"text": "".join(pieces), "pieces": pieces, "starts": roles, "finish": finish, "usage": usage,
            "error": error}


def anthropic_fox(model):
    """The same with Anthropic's stream helper, which rebuilds the message from the events."""
    pieces, kinds, final, error = [], [], None, None
    try:
        with ant().messages.stream(model=model, max_tokens=64, messages=FOX) as s:
            for event in s:
                kinds.append(event.type)
                if event.type == "text":
                    pieces.append(event.text)
            final = s.get_final_message()
    except anthropic.APIError as e:
        error = error_of(e)
    out = {"text": "".join(pieces), "pieces": pieces, "starts": kinds.count("message_start"), "error": error}
    if final is not None:
        check(len(final.content) == 1 and final.content[0].text == out["text"], final)
        out.update(finish=final.stop_reason, usage=final.usage.model_dump())
    return out


SCENARIOS = {
    "openai_to_anthropic": lambda: {"text": openai_text("vend_anthropic"), "stream": openai_stream("vend_anthropic")},
    "openai_to_openai": lambda: {"text": openai_text("vend_openai"), "stream": openai_stream("vend_openai")},
    "anthropic_to_openai": lambda: {"text": anthropic_text("vend_openai"), "stream": anthropic_stream("vend_openai")},
    "anthropic_to_anthropic": lambda: {"text": anthropic_text("vend_anthropic"), "stream": anthropic_stream("vend_anthropic")},
    "tools": lambda: {
        "openai_to_anthropic": openai_tools("vend_anthropic"),
        "openai_to_openai": openai_tools("vend_openai"),
        "anthropic_to_openai": anthropic_tools("vend_openai"),
        "anthropic_to_openai_stream": anthropic_tools("vend_openai", stream=True),
        "anthropic_to_anthropic": anthropic_tools("vend_anthropic"),
    },
    "retried": lambda: {"openai": openai_text("vend_anthropic"), "anthropic": anthropic_text("vend_openai")},
    "rate_limited": rate_limited,
    "unauthorized": unauthorized,
    "too_large": too_large,
    "overloaded": overloaded,
    "stream_error": stream_error,
    "fox_openai": lambda: openai_fox(ARGS[0]),
    "fox_anthropic": lambda: anthropic_fox(ARGS[0]),
    "alias": lambda: {"openai": openai_text("fast"), "anthropic": anthropic_text("fast")},
}

print(json.dumps(SCENARIOS[SCENARIO]()))
