"""The collator's batches, checked by the `labellint` fixture (it comes with labellint; settings
from [tool.labellint] in ../pyproject.toml)."""

import pytest
from data import build_dataset, load_tokenizer, make_collator
from torch.utils.data import DataLoader


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="session")
def dataset(tokenizer):
    return build_dataset(tokenizer)


def test_training_batches_are_clean(labellint, tokenizer, dataset):
    # Every batch, as the collator builds them for training.
    loader = DataLoader(dataset, batch_size=8, collate_fn=make_collator(tokenizer))
    labellint.assert_clean(loader, tokenizer=tokenizer)


def test_one_batch_is_clean(labellint, tokenizer, dataset):
    batch = make_collator(tokenizer)([dataset[i] for i in range(4)])
    report = labellint.assert_clean(batch, tokenizer=tokenizer)
    assert report.sources[0].rows == 4


def test_the_check_catches_labels_on_padding(labellint, tokenizer, dataset):
    # The test above would fail on this collator: labels padded with the pad id.
    batch = make_collator(tokenizer, bug="labels-on-padding")([dataset[i] for i in range(4)])
    report = labellint.check(batch, tokenizer=tokenizer)
    assert [f.name for f in report.findings] == ["labels-on-padding"]
