"""The bundled example (`make example`) shows exactly the mistakes it plants."""

import importlib.util
from pathlib import Path

import pytest

import labellint

pytest.importorskip("datasets")
ROOT = Path(__file__).parent.parent


def load_builder():
    spec = importlib.util.spec_from_file_location("build_example",
                                                  ROOT / "examples" / "build_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_finds_each_planted_mistake_at_its_rows(tmp_path):
    load_builder().build(tmp_path)
    report = labellint.check(tmp_path / "sft", tmp_path / "tokenizer")
    rows = {f.code: f for f in report.findings}
    planted = {  # the construction in examples/build_example.py
        "LL101": [i for i in range(400) if i % 50 == 7],
        "LL401": list(range(380, 400)),
        "LL404": [i for i in range(400) if i % 25 == 11],
        "LL409": [i for i in range(400) if i % 40 == 3],
    }
    assert set(rows) == set(planted), str(report)
    for code, expected in planted.items():
        assert rows[code].count_rows == len(expected)
        assert list(rows[code].rows) == expected[:5]
