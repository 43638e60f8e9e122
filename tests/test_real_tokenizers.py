"""The real-tokenizer helper: every tokenizer reproduces llama.cpp's reference tokenizations,
carries its model's special tokens and template, and the cache is reused and never half-built."""

import io
import os
import tarfile
import time

import pytest

import real_tokenizers as rt

NAMES = list(rt.SPECS)


@pytest.mark.parametrize("name", NAMES)
def test_a_real_tokenizer_reproduces_its_reference_tokenizations(real_tokenizers, name):
    real = real_tokenizers[name]
    ref = rt.reference(rt.models_dir(), real.spec.vocab)
    assert len(ref) >= 40  # the files hold 46-50 cases; fewer means the split went wrong
    assert sum(len(ids) for _, ids in ref) > 200
    bad = rt.mismatches(real.tokenizer, ref)
    assert not bad, f"{len(bad)} of {len(ref)} differ, first: {bad[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_a_real_tokenizer_carries_its_models_special_tokens_and_template(real_tokenizers, name):
    spec, tok = real_tokenizers[name].spec, real_tokenizers[name].tokenizer
    ids = tok.convert_tokens_to_ids
    assert tok.eos_token_id == ids(spec.eos)
    assert tok.bos_token_id == (ids(spec.bos) if spec.bos else None)
    assert tok.pad_token_id == (ids(spec.pad) if spec.pad else None)
    encoded = tok("Hello world")["input_ids"]
    assert (encoded[0] == tok.bos_token_id) == spec.add_bos
    assert encoded[-1] != tok.eos_token_id  # none of these models appends EOS to plain text
    if spec.template is None:
        assert not tok.chat_template
        return
    assert tok.chat_template == (rt.models_dir() / "templates" / spec.template).read_text()
    chat = [{"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."}]
    rendered = tok.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    # the end-of-turn marker is one token of the vocabulary, and the template writes it
    assert ids(spec.eot) in rendered
    assert tok.decode(rendered).count("Blue.") == 1


@pytest.mark.slow
def test_a_second_load_reuses_the_cache_without_downloading_or_converting(
        real_tokenizers, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(rt, "_download", forbidden)
    monkeypatch.setattr(rt, "_backend", forbidden)
    start = time.perf_counter()
    tok = rt.load("llama2")
    assert time.perf_counter() - start < 5  # ~0.1 s here; building it from GGUF is seconds
    assert tok.encode("Hello world") == real_tokenizers["llama2"].tokenizer.encode("Hello world")
    assert set(rt.load_all()) == set(rt.SPECS)


def _sdist(tmp_path, members):
    """A small .tar.gz built like the sdist: members are (name, bytes) or (name, TarInfo)."""
    path = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            if isinstance(data, tarfile.TarInfo):
                data.name = name
                tar.addfile(data)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


PREFIX = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"


def test_extraction_keeps_only_vocab_and_template_files(tmp_path):
    sdist = _sdist(tmp_path, [(PREFIX + "ggml-vocab-x.gguf", b"G"),
                              (PREFIX + "ggml-vocab-x.gguf.inp", b"a"),
                              (PREFIX + "templates/a.jinja", b"{{ x }}"),
                              (PREFIX + "templates/README.md", b"no"),
                              (PREFIX + "../../setup.py", b"no"),
                              ("llama_cpp_python-0.3.36/llama_cpp/llama.py", b"no")])
    (tmp_path / "out").mkdir()
    assert rt.extract(sdist, tmp_path / "out") == 3
    kept = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                  if p.is_file())
    assert kept == ["ggml-vocab-x.gguf", "ggml-vocab-x.gguf.inp", "templates/a.jinja"]
    assert not (tmp_path / "setup.py").exists()


def test_a_link_posing_as_a_vocab_file_is_refused(tmp_path):
    link = tarfile.TarInfo()
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    sdist = _sdist(tmp_path, [(PREFIX + "ggml-vocab-x.gguf", link)])
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="not a regular file"):
        rt.extract(sdist, tmp_path / "out")


def test_a_bad_archive_fails_and_leaves_no_partial_cache(tmp_path, monkeypatch):
    # complete enough to extract, but lacking every vocabulary the helper needs
    sdist = _sdist(tmp_path, [(PREFIX + "ggml-vocab-llama-bpe.gguf", b"G"),
                              (PREFIX + "templates/Qwen3.5-4B.jinja", b"{{ x }}")])
    monkeypatch.setenv(rt.SDIST_ENV, str(sdist))
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="lacks ggml-vocab-llama-bpe.gguf.inp"):
        rt.models_dir(root)
    assert sorted(p.name for p in root.iterdir()) == []  # no models/, no temporary folders
    (tmp_path / "junk.tar.gz").write_bytes(b"not a gzip file")
    monkeypatch.setenv(rt.SDIST_ENV, str(tmp_path / "junk.tar.gz"))
    with pytest.raises(tarfile.ReadError):  # a failure, not RegistryUnreachable (a skip)
        rt.models_dir(root)
    assert list(root.iterdir()) == []


def test_an_unreachable_registry_is_told_apart_from_other_failures(tmp_path, monkeypatch):
    monkeypatch.delenv(rt.SDIST_ENV, raising=False)
    # pip reads its settings from the environment; a closed local port is an unreachable index
    # (with no retry at all pip does not say why it found nothing, so allow one)
    for key, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/",
                       "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_RETRIES": "1",
                       "PIP_TIMEOUT": "3"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(rt.RegistryUnreachable, match="unreachable"):
        rt._download(tmp_path)
    # an index that answers but has no such package is a failure, never a skip
    (tmp_path / "index").mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "index").as_uri())
    with pytest.raises(RuntimeError) as failed:
        rt._download(tmp_path)
    assert not isinstance(failed.value, rt.RegistryUnreachable)
