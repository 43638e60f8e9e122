"""The chat-template probe is bounded: a template that loops for hours, writes gigabytes, raises
or never writes the messages is read as unreadable within the bound, with the reason in the
facts line; a normal template renders exactly as transformers renders it."""

import time

import pytest

import labellint
from labellint import chat_format, template
from labellint.testing import chatml_tokenizer

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}")
HOSTILE = {
    "nested loops over range": "{% for a in range(100000) %}{% for b in range(100000) %}"
                               "{% endfor %}{% endfor %}" + CHATML,
    "loops nested 12 deep over the messages": "{% for m in messages %}" * 12
                                              + "{% endfor %}" * 12 + CHATML,
    "an exponential macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                            "{% endmacro %}{{ f(60) }}" + CHATML,
    "a string repeated 10**9 times": "{{ 'x' * 10**9 }}" + CHATML,
    "a list repeated 10**9 times": "{% set xs = [0] * 10**9 %}" + CHATML,
    "an enormous output from a loop": "{% for i in range(100000) %}{{ 'x' * 100000 }}"
                                      "{% endfor %}" + CHATML,
    "a huge power": "{{ 10 ** 1000000000 }}" + CHATML,
    "a width of 10**9 through a filter": "{{ 'x' | center(10**9) }}" + CHATML,
    "a width of 10**9 through a method": "{{ 'x'.ljust(10**9) }}" + CHATML,
    "a width of 10**9 in a %-format": "{{ '%1000000000d' % 1 }}" + CHATML,
    "a width of 10**9 in str.format": "{{ '{:>1000000000}'.format(1) }}" + CHATML,
    "a growing string in a namespace": "{% set ns = namespace(s='') %}{% for i in range(99999) %}"
                                       "{% for j in range(99999) %}{% set ns.s = ns.s ~ 'ab' %}"
                                       "{% endfor %}{% endfor %}" + CHATML,
    "recursion without end": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}" + CHATML,
    "range(10**9)": "{% for i in range(10**9) %}{% endfor %}" + CHATML,
}


def _facts_line(report) -> str:
    return next(line for line in str(report).splitlines() if line.startswith("facts for"))


@pytest.fixture
def fast_probe(monkeypatch):
    monkeypatch.setattr(template, "PROBE_SECONDS", 0.3)
    monkeypatch.setattr(template, "_FAILED", {})


@pytest.mark.parametrize("case", HOSTILE, ids=str)
def test_a_hostile_chat_template_is_read_within_the_bound(fast_probe, case):
    tok = chatml_tokenizer()
    tok.chat_template = HOSTILE[case]
    ids = tok("hello world")["input_ids"] + [tok.eos_token_id]
    start = time.monotonic()
    report = labellint.check({"input_ids": [ids, ids], "labels": [ids, ids]}, tokenizer=tok)
    took = time.monotonic() - start
    assert took < 5, f"{case}: {took:.1f} s"
    chat_fact = report.sources[0].facts.chat
    # The known ChatML family stands in, and the facts line says why the template was not read.
    assert chat_fact.origin.startswith("known family (the chat template could not be read: ")
    assert "could not be read: it" in _facts_line(report)


def test_the_default_bound_stops_a_template_that_would_run_for_minutes():
    tok = chatml_tokenizer()
    tok.chat_template = HOSTILE["loops nested 12 deep over the messages"]
    start = time.monotonic()
    fmt = chat_format.chat_format(tok)
    took = time.monotonic() - start
    assert took < 3 * template.PROBE_SECONDS
    assert f"its render ran past {template.PROBE_SECONDS:g} s" in fmt.origin


@pytest.mark.parametrize("template, reason", [
    ("{{ raise_exception('only user and assistant roles') }}",
     "it raised TemplateError: only user and assistant roles"),
    ("{% for m in messages %}<|im_start|>{{ m.role }}\n<|im_end|>\n{% endfor %}",
     "its render does not contain the messages' contents"),
    ("{% for m in messages %}{{ m.content }}{% endfor %",
     "it does not compile (TemplateSyntaxError"),
    ("{% for m in messages %}{{ m.content | nosuchfilter }}{% endfor %}",
     "it does not compile (TemplateAssertionError"),
    ("{{ messages.__class__ }}{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}",
     "its render has no role header"),
])
def test_a_template_that_fails_falls_back_with_the_reason(fast_probe, template, reason):
    tok = chatml_tokenizer()
    tok.chat_template = template
    ids = tok("hello world")["input_ids"] + [tok.eos_token_id]
    report = labellint.check({"input_ids": [ids, ids], "labels": [ids, ids]}, tokenizer=tok)
    assert reason in report.sources[0].facts.chat.origin
    assert reason in _facts_line(report)


def test_a_template_whose_tokenizer_has_no_known_family_still_says_why():
    from labellint.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.chat_template = "{{ raise_exception('no') }}"
    fmt = labellint.check({"input_ids": [[1, 5, 2], [1, 6, 2]]}, tokenizer=tok) \
        .sources[0].facts.chat
    assert not fmt.headers and "it raised TemplateError: no" in fmt.origin


@pytest.mark.parametrize("roles", chat_format.PROBES)
def test_the_bounded_render_matches_transformers(roles):
    tok = chatml_tokenizer()
    messages = [{"role": r, "content": f"turn {i}"} for i, r in enumerate(roles)]
    for add in (False, True):
        assert template.render(tok, messages, add_generation_prompt=add) == \
            tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add)


def test_the_sandbox_still_refuses_internals():
    tok = chatml_tokenizer()
    tok.chat_template = "{{ messages.__class__.__mro__ }}" + CHATML
    with pytest.raises(template.TemplateUnreadable, match="SecurityError|UndefinedError|raised"):
        template.render(tok, [{"role": "user", "content": "a"}])
