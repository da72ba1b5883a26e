#!/usr/bin/env python3
"""Reference renderer for tests/test_chat_features.c: Python's Jinja2 set up
as Hugging Face transformers renders chat templates. Reads one JSON object
{template, messages, add_generation_prompt, bos_token, eos_token} per line on
stdin and writes, per line, a JSON object {"text": ...} or {"error": ...}."""
import datetime
import json
import sys

try:
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("no jinja2", file=sys.stderr)
    sys.exit(77)


class Raised(Exception):
    pass


def raise_exception(msg):
    raise Raised(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime(2026, 1, 15).strftime(fmt)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

for line in sys.stdin:
    req = json.loads(line)
    try:
        text = env.from_string(req["template"]).render(
            messages=req["messages"], add_generation_prompt=req["add_generation_prompt"],
            bos_token=req["bos_token"], eos_token=req["eos_token"])
        out = {"text": text}
    except Raised as e:
        out = {"error": str(e), "raised": True}
    except Exception as e:  # noqa: BLE001 - any template failure is an error
        out = {"error": type(e).__name__ + ": " + str(e)}
    print(json.dumps(out), flush=True)
