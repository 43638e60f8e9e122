"""A tokenizer folder read with the tokenizers library gives the facts, and the report, that the
same folder read by transformers gives; reading one imports neither transformers nor torch."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labellint
from labellint.hf_facts import known_facts, load_tokenizer, tokenizer_facts
from labellint.tokenizer_files import TokenizerFolder, read_folder, transformers_tokenizer

import real_tokenizers as rt

NAMES = list(rt.SPECS)
TEXTS = ["The quick brown fox jumps over the lazy dog.", "東京は日本の首都です。",
         "def add(a, b):\n    return a + b", "  Indented\twith a tab   ", "Мир, труд, май."]


def _rows(tok):
    """A few rows of real encodings with planted defects: a fully masked row, a row whose
    labels hold an id past the vocabulary, a row trained on its special tokens."""
    rows = []
    for i, text in enumerate(TEXTS):
        if tok.chat_template:
            ids = tok.apply_chat_template([{"role": "user", "content": text},
                                           {"role": "assistant", "content": f"answer {i}."}],
                                          tokenize=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        else:
            ids = tok(text)["input_ids"] + [tok.eos_token_id]
        labels = list(ids)
        if i == 1:
            labels = [-100] * len(ids)
        if i == 2:
            labels[3] = len(tok) + 5
        rows.append((ids, labels))
    return {"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]}


def _parquet(path, columns):
    pq.write_table(pa.table({k: pa.array(v, pa.list_(pa.int64())) for k, v in columns.items()}),
                   path)
    return str(path)


@pytest.mark.parametrize("name", NAMES)
def test_a_real_tokenizer_folder_reads_as_transformers_reads_it(name, real_tokenizers, tmp_path):
    real = real_tokenizers[name]
    light = read_folder(real.path)
    assert isinstance(light, TokenizerFolder)
    assert isinstance(load_tokenizer(real.path), TokenizerFolder)

    facts, want = tokenizer_facts(light), tokenizer_facts(real.tokenizer)
    assert facts == want
    assert known_facts({}, light) == known_facts({}, real.tokenizer)
    if want["chat"] is not None:
        ids = real.tokenizer.encode(TEXTS[0] + "<|im_end|>", add_special_tokens=False)
        assert facts["chat"].decode(ids) == want["chat"].decode(ids)
    assert light.all_special_ids == real.tokenizer.all_special_ids
    assert light.special_tokens_map == real.tokenizer.special_tokens_map
    assert light._full is None  # nothing above needed transformers

    path = _parquet(tmp_path / "rows.parquet", _rows(real.tokenizer))
    got = labellint.check(path, tokenizer=light)
    expected = labellint.check(path, tokenizer=real.tokenizer)
    assert got.to_dict() == expected.to_dict()
    assert any(w.texts for f in got.findings for w in f.windows)  # decoded strips compared


def test_a_folder_transformers_must_read_is_left_to_it(real_tokenizers, tmp_path):
    source = real_tokenizers["qwen2.5-instruct"].path
    folder = tmp_path / "tok"
    folder.mkdir()
    for f in source.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    # A model-specific class: transformers builds its pipeline from the class's own code.
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**config, "tokenizer_class": "Qwen2Tokenizer"}))
    assert read_folder(folder) is None
    assert not isinstance(load_tokenizer(folder), TokenizerFolder)
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "legacy": True}))
    assert read_folder(folder) is None
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").unlink()
    assert read_folder(folder) is None


def test_what_it_does_not_offer_comes_from_transformers(real_tokenizers):
    real = real_tokenizers["qwen2.5-instruct"]
    light = read_folder(real.path)
    messages = [{"role": "user", "content": "hi"}]
    assert light.apply_chat_template(messages, tokenize=False) == \
        real.tokenizer.apply_chat_template(messages, tokenize=False)
    assert light.model_max_length == real.tokenizer.model_max_length


def test_checking_with_a_tokenizer_folder_imports_neither_transformers_nor_torch(tmp_path):
    try:
        folder = rt.tokenizer_dir("qwen2.5-instruct")
    except rt.RegistryUnreachable as e:
        pytest.skip(f"real tokenizers need the {rt.PACKAGE} sdist: {e}")
    path = _parquet(tmp_path / "small.parquet",
                    {"input_ids": [[151644, 872, 198, 9707, 151645]] * 10,
                     "labels": [[-100] * 5] + [[151644, 872, 198, 9707, 151645]] * 9})
    script = ("import sys\nfrom labellint.cli import main\ncode = main(sys.argv[1:])\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('transformers', 'torch')))\n")
    done = subprocess.run([sys.executable, "-c", script, "check", path, "--isolated",
                           "--tokenizer", str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).parent, timeout=120)
    assert "LL101" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_folder_saved_by_transformers_4_reads_as_transformers_reads_it(real_tokenizers,
                                                                          tmp_path):
    real = real_tokenizers["llama3-instruct"]
    folder = tmp_path / "tok"
    folder.mkdir()
    for f in real.path.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    # As transformers 4 saves a fast tokenizer: the added tokens in the config too, and the
    # special tokens again in special_tokens_map.json.
    config["added_tokens_decoder"] = {str(i): {"content": t.content, "special": t.special,
                                               "lstrip": t.lstrip, "rstrip": t.rstrip,
                                               "normalized": t.normalized,
                                               "single_word": t.single_word}
                                      for i, t in real.tokenizer.added_tokens_decoder.items()}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    named = {k: config[k] for k in ("bos_token", "eos_token") if config.get(k)}
    (folder / "special_tokens_map.json").write_text(json.dumps(named))
    light = read_folder(folder)
    assert isinstance(light, TokenizerFolder)
    assert tokenizer_facts(light) == tokenizer_facts(transformers_tokenizer(folder, False))

    # A map that says otherwise, or a config whose added token differs from the file's: each
    # is transformers' to settle.
    (folder / "special_tokens_map.json").write_text(json.dumps({**named, "pad_token": "!"}))
    assert read_folder(folder) is None
    (folder / "special_tokens_map.json").write_text(json.dumps(named))
    config["added_tokens_decoder"]["128000"]["special"] = False
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert read_folder(folder) is None
