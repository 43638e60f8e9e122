"""The first batches of a Trainer's dataloader, drawn without disturbing what training sees."""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..errors import LabelLintError


def first_batches(loader: Any, n: int) -> list[dict[str, Any]]:
    """The first `n` batches `loader` will yield, with no effect on what it yields afterwards.

    They come from a single-process loader over the same dataset, sampler and collator
    (accelerate's wrapper keeps the Trainer's loader as `base_dataloader`): iterating the
    loader itself would start worker processes, and a persistent one would keep our epoch's
    seeds. Every random state an iteration draws from is restored afterwards.

    What a collator or dataset draws at random inside dataloader workers comes from the
    workers' seeds, not ours: such batches are checked as the main process would make them.
    A one-shot stream (iter() returning one shared iterator) cannot be read twice: LabelLintError.
    """
    base = getattr(loader, "base_dataloader", loader)
    if not isinstance(base, torch.utils.data.DataLoader):
        with _random_state_kept(()):
            return _take(iter(base), n)
    common = dict(collate_fn=base.collate_fn, num_workers=0, generator=base.generator)
    if isinstance(base.dataset, torch.utils.data.IterableDataset):
        if iter(base.dataset) is iter(base.dataset):
            raise LabelLintError("the training dataset is a one-shot stream (iter() returns the "
                                 "same iterator): batches drawn for the check would be lost to "
                                 "training")
        fresh = torch.utils.data.DataLoader(base.dataset, batch_size=base.batch_size,
                                            drop_last=base.drop_last, **common)
    elif base.batch_sampler is not None:
        fresh = torch.utils.data.DataLoader(base.dataset, batch_sampler=base.batch_sampler,
                                            **common)
    else:
        fresh = torch.utils.data.DataLoader(base.dataset, batch_size=None, sampler=base.sampler,
                                            **common)
    generators = [g for g in (base.generator, _sampler_generator(base)) if g is not None]
    with _random_state_kept(generators):
        return _take(iter(fresh), n)


def _sampler_generator(loader: torch.utils.data.DataLoader) -> torch.Generator | None:
    sampler = getattr(loader.batch_sampler, "sampler", None) or loader.sampler
    generator = getattr(sampler, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _take(batches: Iterator[Any], n: int) -> list[dict[str, Any]]:
    out = []
    for batch in batches:
        out.append(dict(batch))
        if len(out) == n:
            break
    return out


@contextlib.contextmanager
def _random_state_kept(generators: Sequence[torch.Generator]) -> Iterator[None]:
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
              [g.get_state() for g in generators])
    try:
        yield
    finally:
        python, numpy_state, torch_state, cuda, own = states
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for g, s in zip(generators, own):
            g.set_state(s)
