"""Shared test fixtures. Everything is built offline: no test may reach a model hub."""

import os

# Set before any test module imports transformers, datasets or trl.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tok():
    """The tiny Llama-style tokenizer with a distinct pad token `<pad>` (id 0), right padding."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from labellint.testing import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def eos_pad_tok():
    """The tiny tokenizer with pad_token == eos_token `</s>`, as many fine-tuning recipes set it."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from labellint.testing import tiny_tokenizer

    return tiny_tokenizer(pad_is_eos=True)


@pytest.fixture(scope="session")
def left_tok():
    """The tiny tokenizer padding on the left, as set up for generation."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from labellint.testing import tiny_tokenizer

    return tiny_tokenizer(padding_side="left")


@pytest.fixture(scope="session")
def real_tokenizers():
    """Every real tokenizer variant (tests/real_tokenizers.py), name -> RealTokenizer; built
    once into the cache outside the repo. Skips only when the package registry is unreachable."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    import real_tokenizers as rt

    try:
        return rt.load_all()
    except rt.RegistryUnreachable as e:
        pytest.skip(f"real tokenizers need the {rt.PACKAGE} {rt.VERSION} sdist: {e}")
