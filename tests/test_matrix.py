"""Every real tokenizer x every data kind built by real library code x both surfaces (the API
and the CLI on the saved folder): no crash, no usage error, and correct data has no error."""

import contextlib
import json
from dataclasses import dataclass, field

import pytest

import real_tokenizers as rt

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import labellint  # noqa: E402
from labellint import cli  # noqa: E402

# Every test here trains with a Trainer or runs pytest in a process that imports
# transformers: `-m "not slow"` leaves them to CI.
pytestmark = pytest.mark.slow

# Real, varied text: short and long rows (so batches need padding), several scripts, code,
# numbers, and whitespace runs that tokenizers treat specially.
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis converts light energy into chemical energy: plants take in carbon dioxide "
    "and water, and with sunlight they make glucose and release oxygen into the air around "
    "them. Most of it happens in the chloroplasts of leaf cells.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Berlin ist die Hauptstadt Deutschlands und mit rund 3,8 Millionen Einwohnern die "
    "bevölkerungsreichste Stadt des Landes.",
    "東京は日本の首都です。",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong and Buzz Aldrin walked on its "
    "surface for about two and a half hours while Michael Collins orbited above.",
    "Hello, world!",
    "Мир, труд, май.",
    "A recipe for pancakes: mix 200 g flour, 2 eggs, 300 ml milk and a pinch of salt; rest the "
    "batter for 30 minutes, then fry thin layers in a hot buttered pan until golden.",
    "  Indented text\twith a tab and trailing spaces   ",
    "¿Dónde está la biblioteca? Está al lado del museo.",
    "Prime numbers below 30: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29.",
]
PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Translate to German: good morning", "Guten Morgen."),
    ("Write a haiku about the sea.", "Waves fold into foam,\nthe tide keeps its slow promise,"
                                     "\nsalt on the cold wind."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Explain recursion in one sentence.", "Recursion is when a function solves a problem by "
                                           "calling itself on smaller instances of the same "
                                           "problem until it reaches a base case."),
    ("Name a prime number greater than 10.", "13."),
    ("What does HTTP stand for?", "HyperText Transfer Protocol."),
    ("Summarise: The meeting moved to Thursday because the room was booked.",
     "The meeting is now on Thursday; the room was taken."),
    ("Is water wet?", "Water makes other things wet; whether water itself is wet depends on "
                      "the definition."),
    ("Give me a synonym for happy.", "Joyful."),
]
CONVERSATIONS = [
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    if i % 3 == 0 else
    [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    + ([{"role": "user", "content": "Thanks! And why?"},
        {"role": "assistant", "content": "Because that is what the sources say."}]
       if i % 3 == 2 else [])
    for i, (q, a) in enumerate(PAIRS)
]
BATCH = 4
MAX_LENGTH = 48  # the pretraining rows are cut here, so some end without EOS

MATRIX = ["llama3", "llama3-instruct", "llama2", "qwen2.5", "qwen2.5-instruct", "qwen3.5",
          "qwen3.5-instruct", "gemma4", "gemma4-instruct", "phi3.5", "phi3.5-instruct", "gpt2"]
KINDS = ["lm-collator", "trl-text", "trl-prompt-completion", "trl-conversational",
         "trl-assistant-only", "seq2seq-right", "seq2seq-left", "flattening", "no-labels"]
# The templates TRL 1.16 can patch with `{% generation %}` markers for assistant_only_loss (it
# refuses Llama 3.1's and Gemma 4's): these also get an assistant-only conversational cell.
ASSISTANT_ONLY = {"qwen2.5-instruct", "qwen3.5-instruct", "phi3.5-instruct"}
assert set(MATRIX) == set(rt.SPECS)


@dataclass
class Cell:
    """One data kind for one tokenizer: what the API checks, and the folder the CLI checks."""

    source: object            # the batches (as a DataLoader yields them) or the Dataset
    folder: str               # its save_to_disk folder
    tokenizer: object         # the tokenizer the pipeline used
    tokenizer_dir: str        # the same tokenizer on disk
    pad_token: str | None = None  # the pad token the pipeline set (TRL), restored for the API
    rows: int = field(init=False)

    def __post_init__(self):
        self.rows = len(datasets.load_from_disk(self.folder))


@contextlib.contextmanager
def _state(tok, **attrs):
    """Set tokenizer attributes for a while: the session's tokenizers are shared."""
    saved = {k: getattr(tok, k) for k in attrs}
    try:
        for k, v in attrs.items():
            setattr(tok, k, v)
        yield tok
    finally:
        for k, v in saved.items():
            setattr(tok, k, v)


def _rows_of(batches):
    """The padded rows of collated batches, as the lists a saved dataset holds."""
    cols: dict[str, list] = {}
    for b in batches:
        for k, v in b.items():
            if isinstance(v, torch.Tensor) and v.dim() == 2:
                cols.setdefault(k, []).extend(v.tolist())
    return cols


def _save(data, path) -> str:
    ds = data if isinstance(data, datasets.Dataset) else datasets.Dataset.from_dict(data)
    ds.save_to_disk(str(path))
    return str(path)


def _padded_tokenizer(real, tmp):
    """The tokenizer a user pretrains with: pad != eos, a `<pad>` added where it has none (or
    only EOS as pad), saved beside the data for the CLI."""
    tok, spec = real.tokenizer, real.spec
    if spec.pad is not None and spec.pad != spec.eos:
        return tok, str(real.path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(real.path))
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.save_pretrained(str(tmp / "tokenizer-padded"))
    return tok, str(tmp / "tokenizer-padded")


def _tiny_model(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2))


def _trl(real, train, tmp, **config):
    """SFTTrainer's own preparation and collator; returns (batches, the pad token it set)."""
    from trl import SFTConfig, SFTTrainer

    tok = real.tokenizer
    with _state(tok, pad_token=tok.pad_token):  # TRL sets pad = eos where there is none
        trainer = SFTTrainer(
            model=_tiny_model(tok), processing_class=tok,
            train_dataset=datasets.Dataset.from_list(train),
            args=SFTConfig(output_dir=str(tmp / "trl"), report_to=[], use_cpu=True, bf16=False,
                           per_device_train_batch_size=BATCH, **config))
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        batches = [trainer.data_collator(rows[i:i + BATCH]) for i in range(0, len(rows), BATCH)]
        return batches, tok.pad_token


def _seq2seq_rows(tok):
    """Prompt-masked rows as a hand-written preprocessing function builds them."""
    rows = []
    for prompt, answer in PAIRS:
        p = tok(prompt)["input_ids"]
        a = tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": p + a, "attention_mask": [1] * (len(p) + len(a)),
                     "labels": [-100] * len(p) + a})
    return rows


def _build(real, tmp):
    from transformers import (DataCollatorForLanguageModeling, DataCollatorForSeq2Seq,
                              DataCollatorWithFlattening)

    datasets.disable_progress_bars()
    tok, spec = real.tokenizer, real.spec
    cells: dict[str, Cell] = {}

    padded, padded_dir = _padded_tokenizer(real, tmp)
    encoded = [padded(t, truncation=True, max_length=MAX_LENGTH - 1)["input_ids"] for t in TEXTS]
    encoded = [ids + [padded.eos_token_id] for ids in encoded]
    collate = DataCollatorForLanguageModeling(padded, mlm=False)
    batches = [collate([{"input_ids": r} for r in encoded[i:i + BATCH]])
               for i in range(0, len(encoded), BATCH)]
    cells["lm-collator"] = Cell(batches, _save(_rows_of(batches), tmp / "lm"), padded, padded_dir)

    batches, pad = _trl(real, [{"text": t} for t in TEXTS], tmp)
    cells["trl-text"] = Cell(batches, _save(_rows_of(batches), tmp / "trl-text"), tok,
                             str(real.path), pad)
    batches, pad = _trl(real, [{"prompt": p, "completion": " " + a} for p, a in PAIRS], tmp)
    cells["trl-prompt-completion"] = Cell(batches, _save(_rows_of(batches), tmp / "trl-pc"), tok,
                                          str(real.path), pad)
    if spec.template:
        batches, pad = _trl(real, [{"messages": c} for c in CONVERSATIONS], tmp)
        cells["trl-conversational"] = Cell(batches, _save(_rows_of(batches), tmp / "trl-chat"),
                                           tok, str(real.path), pad)
    if real.name in ASSISTANT_ONLY:
        batches, pad = _trl(real, [{"messages": c} for c in CONVERSATIONS], tmp,
                            assistant_only_loss=True)
        cells["trl-assistant-only"] = Cell(batches, _save(_rows_of(batches), tmp / "trl-aol"),
                                           tok, str(real.path), pad)

    rows = _seq2seq_rows(padded)
    for side in ("right", "left"):
        with _state(padded, padding_side=side):
            collate = DataCollatorForSeq2Seq(padded, padding="longest", label_pad_token_id=-100)
            batches = [collate(rows[i:i + BATCH]) for i in range(0, len(rows), BATCH)]
        cells[f"seq2seq-{side}"] = Cell(batches, _save(_rows_of(batches), tmp / f"s2s-{side}"),
                                        padded, padded_dir)

    collate = DataCollatorWithFlattening()
    batches = [collate(rows[i:i + BATCH]) for i in range(0, len(rows), BATCH)]
    cells["flattening"] = Cell(batches, _save(_rows_of(batches), tmp / "flat"), padded,
                               padded_dir)

    # input_ids and attention_mask, each text ending in EOS as a pretraining document should
    ids = [r + [tok.eos_token_id] for r in tok(TEXTS)["input_ids"]]
    plain = datasets.Dataset.from_dict({"input_ids": ids,
                                        "attention_mask": [[1] * len(r) for r in ids]})
    cells["no-labels"] = Cell(plain, _save(plain, tmp / "plain"), tok, str(real.path))
    return cells


_BUILT: dict[str, dict[str, Cell]] = {}
_CLI: dict[tuple[str, str], dict[str, tuple[int, list[dict], int, str]]] = {}


@pytest.fixture(scope="module")
def built(real_tokenizers, tmp_path_factory):
    """Each tokenizer's data, built on first use and shared by its cells."""
    def get(name):
        if name not in _BUILT:
            _BUILT[name] = _build(real_tokenizers[name], tmp_path_factory.mktemp(name))
        return _BUILT[name]
    yield get
    _BUILT.clear()
    _CLI.clear()


def _run_cli(capsys, folders, tokenizer_dir):
    capsys.readouterr()
    code = cli.main(["check", *folders, "--tokenizer", tokenizer_dir, "--format", "json",
                     "--isolated", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _cli_result(name, cells, kind, capsys):
    """The CLI's exit code, findings and stderr for one cell. The folders that share a
    tokenizer folder are checked in one run (loading a tokenizer costs up to 2 s); when that
    run fails, each folder is run alone so that the failure lands on its own cell."""
    key = (name, cells[kind].tokenizer_dir)
    if key not in _CLI:
        group = {k: c.folder for k, c in cells.items() if c.tokenizer_dir == key[1]}
        code, out, err = _run_cli(capsys, list(group.values()), key[1])
        results = {}
        if code in (0, 1):
            report = json.loads(out)
            for k, folder in group.items():
                mine = [f for f in report["findings"] if f["source"] == folder]
                rows = report["summary"]["sources"][folder]["rows"]
                results[k] = (1 if mine else 0, mine, rows, err)
        else:
            for k, folder in group.items():
                c, o, e = _run_cli(capsys, [folder], key[1])
                report = json.loads(o) if c in (0, 1) else {}
                results[k] = (c, report.get("findings", []),
                              sum(s["rows"] for s in report.get("summary", {}).get(
                                  "sources", {}).values()), e)
        _CLI[key] = results
    return _CLI[key][kind]


# The one warning correct data gets, asserted exactly: LL202 left-padded-training, since
# DataCollatorForSeq2Seq with padding_side="left" left-pads every row shorter than the longest
# of its batch. Correct as data, but worth a warning: left padding is for generation, and
# some attention paths mis-handle it in training. Every other cell must be clean.
EXPECTED = {"seq2seq-left": {"LL202"}}

XFAIL: dict[tuple[str, str], str] = {}


def _check_cell(findings, kind):
    errors = [f for f in findings if f["severity"] == "error"]
    assert not errors, "\n".join(f"{f['code']} {f['message']} rows {f['rows']}" for f in errors)
    assert {f["code"] for f in findings} == EXPECTED.get(kind, set()), [
        f"{f['code']} {f['message']}" for f in findings]


def _cells():
    for name in MATRIX:
        for kind in KINDS:
            if kind == "trl-conversational" and not rt.SPECS[name].template:
                continue  # conversational data needs a chat template
            if kind == "trl-assistant-only" and name not in ASSISTANT_ONLY:
                continue
            for surface in ("api", "cli"):
                marks = []
                if (name, kind) in XFAIL:
                    marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name, kind])]
                yield pytest.param(name, kind, surface, id=f"{name}-{kind}-{surface}",
                                   marks=marks)


@pytest.mark.parametrize("name, kind, surface", list(_cells()))
def test_correct_data_from_a_real_pipeline_has_no_error(built, name, kind, surface, capsys):
    cells = built(name)
    cell = cells[kind]
    if surface == "api":
        with _state(cell.tokenizer, pad_token=cell.pad_token or cell.tokenizer.pad_token):
            report = labellint.check(cell.source, tokenizer=cell.tokenizer)
        findings = [f.to_dict() for f in report.findings]
        rows = sum(s.rows for s in report.sources)
    else:
        code, findings, rows, err = _cli_result(name, cells, kind, capsys)
        assert code in (0, 1), err
    assert rows == cell.rows  # every row was read and checked
    _check_cell(findings, kind)


def test_an_ordinary_token_spelled_like_an_end_of_turn_marker_does_not_end_a_row(
        real_tokenizers):
    """Gemma 4's vocabulary has `</s>` as an ordinary token (id 212; its EOS is `<eos>`), so
    rows closed with `convert_tokens_to_ids("</s>")`, a Llama recipe copied over, never end in
    EOS: LL404 must say so, not take the ordinary token for an end of turn."""
    tok = real_tokenizers["gemma4"].tokenizer
    fake = tok.convert_tokens_to_ids("</s>")
    assert fake not in tok.all_special_ids and fake != tok.eos_token_id
    rows = [tok(t)["input_ids"] + [fake] for t in TEXTS]
    report = labellint.check({"input_ids": rows, "labels": rows}, tokenizer=tok)
    assert fake not in report.sources[0].facts.end_of_turn_ids
    assert "LL404" in {f.code for f in report.findings}, str(report)
    assert labellint.check(
        {"input_ids": [r[:-1] + [tok.eos_token_id] for r in rows],
         "labels": [r[:-1] + [tok.eos_token_id] for r in rows]}, tokenizer=tok).findings == []
