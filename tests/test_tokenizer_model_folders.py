"""Model configs and tokenizer folders from disk are data: a bad one is one LabelLintError naming
the file, and a tokenizer folder's own code runs only with --trust-remote-code."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labellint
from labellint import LabelLintError
from labellint.testing import tiny_tokenizer

BATCH = {"input_ids": [[1, 5, 6, 2], [1, 7, 2, 0]]}


def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


CONFIGS = {
    "a list": ("[1, 2]", "a model config must be a JSON object, not [1, 2]"),
    "a string": ('"llama"', "a model config must be a JSON object"),
    "a number": ("5", "a model config must be a JSON object, not 5"),
    "null": ("null", "a model config must be a JSON object, not None"),
    "vocab_size a string": ('{"vocab_size": "x"}', "vocab_size must be a positive whole number"),
    "vocab_size negative": ('{"vocab_size": -5}', "vocab_size must be a positive whole number"),
    "vocab_size zero": ('{"vocab_size": 0}', "vocab_size must be a positive whole number"),
    "vocab_size huge": ('{"vocab_size": 10000000000000000000000000}', "below 2**32"),
    "vocab_size a float": ('{"vocab_size": 32000.0}', "vocab_size must be a positive whole"),
    "vocab_size true": ('{"vocab_size": true}', "vocab_size must be a positive whole number"),
    "text_config a number": ('{"text_config": 5}', "text_config must be an object, not 5"),
    "not JSON": ("{vocab_size: 5}", "cannot read a model config"),
    "nested too deeply": ("[" * 100000 + "]" * 100000, "cannot read a model config"),
}


@pytest.mark.parametrize("case", CONFIGS, ids=str)
def test_a_bad_model_config_is_one_error_naming_it(tmp_path, case):
    text, message = CONFIGS[case]
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(LabelLintError) as error:
        labellint.check(BATCH, model=tmp_path)
    line = _one_line(error)
    assert line.startswith(str(tmp_path / "config.json")) and message in line


def test_a_model_config_that_is_not_utf8_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"vocab_size": "\xff"}')
    with pytest.raises(LabelLintError, match="config.json: cannot read a model config"):
        labellint.check(BATCH, model=tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_model_config_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(LabelLintError, match="not a regular file"):
        labellint.check(BATCH, model=tmp_path)


def test_special_ids_of_the_wrong_type_in_a_config_are_passed_over(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"vocab_size": 10, "bos_token_id": True, "eos_token_id": [2, "x", 2**70],
         "pad_token_id": -1}))
    facts = labellint.check(BATCH, model=tmp_path).sources[0].facts
    assert facts.model_bos_id is None and facts.model_eos_ids == (2,)
    assert facts.model_pad_id is None and facts.vocab_size == 10


def test_a_dict_config_is_read_and_a_non_model_is_refused():
    assert labellint.check(BATCH, model={"vocab_size": 10}).sources[0].facts.vocab_size == 10
    with pytest.raises(LabelLintError, match="model must be a transformers model"):
        labellint.check(BATCH, model=5)
    with pytest.raises(LabelLintError, match="vocab_size must be a positive whole number"):
        labellint.check(BATCH, model={"vocab_size": "x"})


# -- tokenizer folders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok") / "good"
    tiny_tokenizer().save_pretrained(folder)
    return folder


def _variant(saved, tmp_path, files):
    folder = tmp_path / "tok"
    shutil.copytree(saved, folder)
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


BROKEN = {
    "tokenizer.json not JSON": {"tokenizer.json": "{not json"},
    "tokenizer.json a list": {"tokenizer.json": "[1, 2]"},
    "tokenizer.json empty object": {"tokenizer.json": "{}"},
    "tokenizer.json not UTF-8": {"tokenizer.json": b"\xff\xfe{"},
    "tokenizer.json model of the wrong type": {
        "tokenizer.json": json.dumps({"version": "1.0", "added_tokens": [], "model": 5})},
    "tokenizer_config.json not JSON": {"tokenizer_config.json": "{not json"},
    "tokenizer_config.json a list": {"tokenizer_config.json": "[1]"},
    "tokenizer_config.json tokenizer_class a number": {
        "tokenizer_config.json": '{"tokenizer_class": 5}'},
    "tokenizer_config.json added tokens of the wrong type": {
        "tokenizer_config.json": '{"added_tokens_decoder": {"x": 5}}'},
    "special_tokens_map.json a list": {"special_tokens_map.json": "[5]"},
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_a_broken_tokenizer_folder_is_one_error_naming_it(saved, tmp_path, case):
    folder = _variant(saved, tmp_path, BROKEN[case])
    with pytest.raises(LabelLintError) as error:
        labellint.check(BATCH, tokenizer=folder)
    assert _one_line(error).startswith(f"{folder}: cannot load a tokenizer from it")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_tokenizer_folder_holding_a_fifo_is_refused_without_blocking(saved, tmp_path):
    folder = _variant(saved, tmp_path, {})
    (folder / "tokenizer_config.json").unlink()
    os.mkfifo(folder / "tokenizer_config.json")
    with pytest.raises(LabelLintError, match="not a regular file"):
        labellint.check(BATCH, tokenizer=folder)


def _custom_code(saved, tmp_path, marker, tokenizer_class):
    """A tokenizer folder whose auto_map names its own class; importing it writes `marker`."""
    config = json.loads((saved / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_own.OwnTokenizer",
                                            "tokenization_own.OwnTokenizer"]}
    if tokenizer_class:
        config["tokenizer_class"] = tokenizer_class
    code = textwrap.dedent(f"""
        open({str(marker)!r}, "w").write("the folder's code ran")
        from transformers import PreTrainedTokenizerFast

        class OwnTokenizer(PreTrainedTokenizerFast):
            pass
    """)
    return _variant(saved, tmp_path, {"tokenization_own.py": code,
                                      "tokenizer_config.json": json.dumps(config)})


@pytest.mark.parametrize("tokenizer_class", ["OwnTokenizer", None])
def test_a_tokenizer_folder_never_runs_its_own_code_unless_trusted(saved, tmp_path,
                                                                   tokenizer_class):
    marker = tmp_path / "ran"
    folder = _custom_code(saved, tmp_path, marker, tokenizer_class)
    if tokenizer_class:  # only its own class will do: refused, and it says how to allow it
        with pytest.raises(LabelLintError) as error:
            labellint.check(BATCH, tokenizer=folder)
        assert "trust_remote_code=True" in _one_line(error)
    else:  # a class transformers has is used instead of the folder's code
        assert labellint.check(BATCH, tokenizer=folder).sources
    assert not marker.exists()


def _labellint(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "labellint", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


@pytest.mark.slow
def test_the_command_line_runs_a_tokenizers_code_only_with_trust_remote_code(saved, tmp_path):
    marker = tmp_path / "ran"
    folder = _custom_code(saved, tmp_path, marker, "OwnTokenizer")
    pq.write_table(pa.table(BATCH), tmp_path / "d.parquet")
    for command in (["check", "d.parquet"], ["show", "d.parquet", "--row", "0"]):
        refused = _labellint(*command, "--tokenizer", folder, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "--trust-remote-code" in refused.stderr and not marker.exists()
    # The marker does show a run: with the flag, the folder's code is imported.
    trusted = _labellint("check", "d.parquet", "--tokenizer", folder, "--trust-remote-code",
                         cwd=tmp_path, env={"HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert trusted.returncode in (0, 1), trusted.stderr
    assert marker.exists()
