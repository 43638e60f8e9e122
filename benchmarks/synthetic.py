"""A seeded synthetic SFT dataset, built with array code: the benchmark's input.

Rows look like tokenised chat SFT data: BOS, a prompt masked with -100, a supervised answer,
EOS; ragged lengths (log-normal, median ~300, capped at 4096); list<int32> columns. A few rows
carry the mistakes labellint exists for, at known rows, so the benchmark also checks that the
fast path still finds them.

The padded shape (`padded=True`) is what a dataset saved from collated batches looks like: about
a third of the rows right-padded to a multiple of 64, with the pad id, attention_mask 0 and
labels -100 there, and a few of them with labels left on the padding (LL103).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

VOCAB = 32_000
PAD, BOS, EOS = 0, 1, 2
MAX_LEN = 4096

# Planted defects: row i carries a defect when i % period == phase.
PLANTED = {
    "LL101": (997, 5),    # fully-masked-row: the answer truncated away
    "LL401": (1009, 7),   # duplicate-bos: a chat template's BOS plus the tokenizer's
    "LL404": (1013, 11),  # missing-eos
    "LL405": (4001, 13),  # token-out-of-vocab
}
# Only in the padded shape, and only in rows that are padded (every third row is); with them
# about 1% of the rows carry a defect. Not in LL101's rows: a label on padding is a target.
PLANTED_PADDED = {
    "LL103": (153, 51),  # labels-on-padding: labels padded with the pad id, not -100
}
PAD_EVERY, PAD_TO = 3, 64  # rows i % 3 == 0 are right-padded up to a multiple of 64


def lengths(n_rows: int, rng: np.random.Generator) -> np.ndarray:
    raw = rng.lognormal(mean=np.log(300), sigma=0.75, size=n_rows)
    return np.clip(raw, 16, MAX_LEN).astype(np.int64)


def build_table(n_tokens: int, seed: int = 0, padded: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    n_rows = int(n_tokens / 390)  # the mean of the length distribution
    lens = lengths(n_rows, rng)
    if padded:
        # A row already at a multiple of PAD_TO gets no padding: not so LL103's rows.
        planted = expected_rows("LL103", n_rows)
        lens[planted] -= lens[planted] % PAD_TO == 0
        return _pad(_build(n_rows, lens, rng), lens)
    return _build(n_rows, lens, rng)


def _build(n_rows: int, lens: np.ndarray, rng: np.random.Generator) -> pa.Table:
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    starts, ends = offsets[:-1], offsets[1:]
    rows = np.arange(n_rows)

    ids = rng.integers(3, VOCAB, size=total, dtype=np.int32)
    ids[starts] = BOS
    ids[ends - 1] = EOS
    prompt = (lens * rng.uniform(0.2, 0.7, size=n_rows)).astype(np.int64)
    pos = np.arange(total) - np.repeat(starts, lens)
    labels = np.where(pos >= np.repeat(prompt, lens), ids, -100).astype(np.int32)

    def planted(code: str) -> np.ndarray:
        period, phase = PLANTED[code]
        return rows[rows % period == phase]

    r = planted("LL101")
    labels[np.concatenate([np.arange(s, e) for s, e in zip(starts[r], ends[r])])] = -100
    ids[starts[planted("LL401")] + 1] = BOS
    r = planted("LL404")
    ids[ends[r] - 1] = 5
    labels[ends[r] - 1] = 5
    ids[starts[planted("LL405")] + 2] = VOCAB + 7

    def column(values: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))

    mask = np.ones(total, dtype=np.int8)
    return pa.table({"input_ids": column(ids), "attention_mask": column(mask),
                     "labels": column(labels)})


def _pad(table: pa.Table, lens: np.ndarray) -> pa.Table:
    """Every third row right-padded to a multiple of PAD_TO, as a right-padding collator leaves
    it; LL103's rows keep labels = input_ids on the padding (labels padded with the pad id)."""
    rows = np.arange(lens.size)
    padded = rows % PAD_EVERY == 0
    width = np.where(padded, -(-lens // PAD_TO) * PAD_TO, lens)
    offsets = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(width, out=offsets[1:])
    total = int(offsets[-1])
    pos = np.arange(total) - np.repeat(offsets[:-1], width)
    real = pos < np.repeat(lens, width)
    on_padding = np.repeat(np.isin(rows, expected_rows("LL103", lens.size)), width) & ~real

    def spread(name: str, fill: int) -> np.ndarray:
        out = np.full(total, fill, dtype=np.int32)
        out[real] = table.column(name).combine_chunks().values.to_numpy()
        return out

    ids = spread("input_ids", PAD)
    labels = spread("labels", -100)
    labels[on_padding] = PAD
    mask = real.astype(np.int8)

    def column(values: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))

    return pa.table({"input_ids": column(ids), "attention_mask": column(mask),
                     "labels": column(labels)})


def expected_rows(code: str, n_rows: int) -> np.ndarray:
    period, phase = {**PLANTED, **PLANTED_PADDED}[code]
    rows = np.arange(n_rows)
    hit = rows % period == phase
    if code in PLANTED_PADDED:
        hit &= rows % PLANTED["LL101"][0] != PLANTED["LL101"][1]
    return rows[hit]


def write(table: pa.Table, out: Path, *, parquet_shards: int = 4,
          single: bool = False) -> dict[str, Path]:
    """The same rows as a `save_to_disk` folder and as parquet shards; with `single`, also as
    one parquet file and one Arrow IPC file (for the memory benchmark)."""
    import pyarrow.parquet as pq
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    paths = {"save_to_disk": out / "sft", "parquet": out / "parquet"}
    out.mkdir(parents=True, exist_ok=True)
    if single:
        paths |= {"single.parquet": out / "single.parquet", "single.arrow": out / "single.arrow"}
        if not paths["single.parquet"].exists():
            # pyarrow's default row groups, as most writers leave them: one of up to 1M rows.
            pq.write_table(table, paths["single.parquet"])
        if not paths["single.arrow"].exists():
            # Batches of 8k rows, as datasets writes them: a reader can stream the file.
            with pa.ipc.new_file(paths["single.arrow"], table.schema) as w:
                w.write_table(table, max_chunksize=8192)
    if not paths["save_to_disk"].exists():
        Dataset(table).save_to_disk(str(paths["save_to_disk"]))
    if not paths["parquet"].exists():
        paths["parquet"].mkdir(parents=True)
        step = -(-table.num_rows // parquet_shards)
        for i in range(parquet_shards):
            # Row groups of 8k rows (~10 MB): several per shard, so a reader can stream them.
            pq.write_table(table.slice(i * step, step),
                           paths["parquet"] / f"train-{i:05d}-of-{parquet_shards:05d}.parquet",
                           row_group_size=8192)
    return paths


if __name__ == "__main__":
    import sys
    import time

    start = time.perf_counter()
    table = build_table(int(float(sys.argv[1])), padded="--padded" in sys.argv[3:])
    write(table, Path(sys.argv[2]), single="--single" in sys.argv[3:])
    print(f"built {table.num_rows:,} rows in {time.perf_counter() - start:.1f}s -> {sys.argv[2]}")
