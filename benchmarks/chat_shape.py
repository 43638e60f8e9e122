"""A seeded chat SFT dataset rendered by a real chat template: the benchmark's chat shape.

Conversations (a system prompt sometimes, 1-4 user/assistant exchanges, random words of varied
length) are rendered by the Qwen2.5 Instruct tokenizer with TRL's training template (the one
`SFTTrainer(assistant_only_loss=True)` swaps in, with `{% generation %}` markers), and labelled
from `apply_chat_template(..., return_assistant_tokens_mask=True)`: assistant tokens kept, the
rest -100. A pool of rendered conversations is tiled with array code, in shuffled order, up to
the number of tokens asked for. About 1% of the rows carry a masking mistake the chat rules find,
at known rows. The tokenizer is saved with the training template, for `--tokenizer`.

    python benchmarks/chat_shape.py 100e6 /tmp/labellint-chat/100M
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
TOKENIZER = "qwen2.5-instruct"
POOL = 1500  # distinct conversations rendered; the rest is tiled from them

# Planted mistakes: row i carries one when i % period == phase (the first code listed wins
# where two would fall on one row, so each row carries at most one).
PLANTED = {
    "LL601": (101, 3),   # supervised-prompt-turn: the first user turn's content trained
    "LL602": (103, 5),   # supervised-role-header: the first `<|im_start|>assistant` trained
    "LL603": (107, 7),   # end-of-turn-not-supervised: every assistant `<|im_end|>` masked
    "LL101": (109, 11),  # fully-masked-row: the row's assistant turns all masked
}
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "dor", "fen",
             "gal", "hin", "jor", "lis", "mar", "nol", "pri", "sten", "tor", "ul", "wex")


def real_tokenizers():
    """tests/real_tokenizers.py, imported by path (the benchmark is not part of the tests)."""
    spec = importlib.util.spec_from_file_location(
        "real_tokenizers", HERE.parent / "tests" / "real_tokenizers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("real_tokenizers", module)
    spec.loader.exec_module(module)
    return module


def training_tokenizer():
    """The Qwen2.5 Instruct tokenizer with TRL's training template as its chat template."""
    from trl.chat_template_utils import get_training_chat_template

    tok = real_tokenizers().load(TOKENIZER)
    # As SFTTrainer does with assistant_only_loss=True when the template has no markers.
    template = get_training_chat_template(tok)
    if template is not None:
        tok.chat_template = template
    return tok


def _words(rng: np.random.Generator, n: int) -> str:
    lengths = rng.integers(1, 4, size=n)
    picks = rng.integers(0, len(SYLLABLES), size=int(lengths.sum()))
    cuts = np.cumsum(lengths)[:-1]
    words = ["".join(SYLLABLES[i] for i in w) for w in np.split(picks, cuts)]
    return " ".join(words)


def conversation(rng: np.random.Generator) -> list[dict[str, str]]:
    conv = []
    if rng.random() < 0.4:
        conv.append({"role": "system", "content": _words(rng, int(rng.integers(3, 40)))})
    for _ in range(int(rng.integers(1, 5))):
        conv.append({"role": "user", "content": _words(rng, int(rng.lognormal(3.0, 0.8)) + 1)})
        conv.append({"role": "assistant",
                     "content": _words(rng, int(rng.lognormal(4.0, 0.9)) + 1)})
    return conv


def render_pool(tok, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`n` rendered conversations as flat arrays plus offsets, with the token masks planting
    needs: the first user turn's content, the first assistant header's markers, and every
    assistant turn's end."""
    start_id = tok.convert_tokens_to_ids("<|im_start|>")
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    role_ids = {r: tok.encode(r, add_special_tokens=False)[0] for r in ("user", "assistant")}
    ids, masks, user, header, eot = [], [], [], [], []
    for _ in range(n):
        out = tok.apply_chat_template(conversation(rng), return_dict=True,
                                      return_assistant_tokens_mask=True)
        row = np.asarray(out["input_ids"], dtype=np.int32)
        opens = np.flatnonzero(row == start_id)
        closes = np.flatnonzero(row == end_id)
        role = row[opens + 1]
        first_user = opens[role == role_ids["user"]][0]
        first_answer = opens[role == role_ids["assistant"]][0]
        u = np.zeros(row.size, dtype=bool)
        u[first_user + 3: closes[closes > first_user][0]] = True  # after `<|im_start|>user\n`
        h = np.zeros(row.size, dtype=bool)
        h[first_answer: first_answer + 2] = True  # `<|im_start|>assistant`
        e = np.zeros(row.size, dtype=bool)
        answers = opens[role == role_ids["assistant"]]
        e[closes[np.searchsorted(closes, answers)]] = True
        ids.append(row)
        masks.append(np.asarray(out["assistant_masks"], dtype=bool))
        user.append(u), header.append(h), eot.append(e)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([r.size for r in ids], out=offsets[1:])
    return {"ids": np.concatenate(ids), "assistant": np.concatenate(masks),
            "user": np.concatenate(user), "header": np.concatenate(header),
            "eot": np.concatenate(eot), "offsets": offsets}


def planted_rows(n_rows: int) -> dict[str, np.ndarray]:
    """Per code, a row mask of the rows carrying it (each row at most one)."""
    rows = np.arange(n_rows)
    taken = np.zeros(n_rows, dtype=bool)
    out = {}
    for code, (period, phase) in PLANTED.items():
        out[code] = (rows % period == phase) & ~taken
        taken |= out[code]
    return out


def expected_rows(code: str, n_rows: int) -> np.ndarray:
    return np.flatnonzero(planted_rows(n_rows)[code])


def tile(pool: dict[str, np.ndarray], n_tokens: int, rng: np.random.Generator) -> pa.Table:
    """Rows drawn from the pool in shuffled passes until `n_tokens`, mistakes planted."""
    k = pool["offsets"].size - 1
    pool_len = np.diff(pool["offsets"])
    passes = -(-n_tokens // int(pool_len.sum())) + 1
    order = np.concatenate([rng.permutation(k) for _ in range(passes)])
    lens = pool_len[order]
    n_rows = int(np.searchsorted(np.cumsum(lens), n_tokens)) + 1
    order, lens = order[:n_rows], lens[:n_rows]
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    src = np.arange(total) + np.repeat(pool["offsets"][order] - offsets[:-1], lens)
    ids = pool["ids"][src]
    labels = np.where(pool["assistant"][src], ids, -100).astype(np.int32)

    planted = {code: np.repeat(rows, lens) for code, rows in planted_rows(n_rows).items()}
    at = planted["LL601"] & pool["user"][src]
    labels[at] = ids[at]
    at = planted["LL602"] & pool["header"][src]
    labels[at] = ids[at]
    labels[planted["LL603"] & pool["eot"][src]] = -100
    labels[planted["LL101"]] = -100

    def column(values: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))

    return pa.table({"input_ids": column(ids), "attention_mask":
                     column(np.ones(total, dtype=np.int8)), "labels": column(labels)})


def build(n_tokens: int, out: Path, *, seed: int = 0, parquet_shards: int = 4) -> dict:
    """Build (or reuse) the chat shape under `out`: paths of the save_to_disk folder, the
    parquet shards and the tokenizer folder, and the number of rows."""
    import pyarrow.parquet as pq
    from datasets import Dataset, disable_progress_bars

    out = Path(out)
    paths = {"save_to_disk": out / "chat", "parquet": out / "parquet", "tokenizer": out / "tok"}
    if all(p.exists() for p in paths.values()):
        n_rows = sum(pq.ParquetFile(f).metadata.num_rows
                     for f in sorted(paths["parquet"].glob("*.parquet")))
        return {**paths, "rows": n_rows}
    rng = np.random.default_rng(seed)
    tok = training_tokenizer()
    table = tile(render_pool(tok, POOL, rng), n_tokens, rng)
    disable_progress_bars()
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(paths["tokenizer"]))
    Dataset(table).save_to_disk(str(paths["save_to_disk"]))
    paths["parquet"].mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // parquet_shards)
    for i in range(parquet_shards):
        pq.write_table(table.slice(i * step, step),
                       paths["parquet"] / f"train-{i:05d}-of-{parquet_shards:05d}.parquet",
                       row_group_size=8192)
    return {**paths, "rows": table.num_rows}


if __name__ == "__main__":
    import time

    start = time.perf_counter()
    built = build(int(float(sys.argv[1])), Path(sys.argv[2]))
    print(f"built {built['rows']:,} rows in {time.perf_counter() - start:.1f}s -> {sys.argv[2]}")
