"""Fact flags on the command line are whole numbers in range, refused at parse time by name."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labellint.cli import main


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 5, 6, 2], [1, 7, 2, 0]]}), path)
    return str(path)


@pytest.mark.parametrize("command", ["check", "show"])
@pytest.mark.parametrize("flag, value", [
    ("--pad-id", "1e23"), ("--pad-id", "100000000000000000000000"), ("--pad-id", "-5"),
    ("--pad-id", "0x10"), ("--bos-id", "1.0"), ("--eos-id", str(2**63)),
    ("--vocab-size", "0"), ("--vocab-size", "-1"), ("--max-length", "-1"),
    ("--max-length", "1e9"), ("--ignore-index", "99999999999999999999999"),
    ("--ignore-index", "-1.5"),
])
def test_a_fact_flag_out_of_range_is_refused_by_name(data, capsys, command, flag, value):
    extra = ["--row", "0"] if command == "show" else []
    with pytest.raises(SystemExit) as exit_:
        main([command, data, *extra, "--isolated", flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert f"argument {flag}: must be" in err and repr(value) in err


def test_max_examples_on_the_command_line_is_a_count_from_zero(data, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", data, "--isolated", "--max-examples", "-1"])
    assert exit_.value.code == 2 and "argument --max-examples: must be" in \
        capsys.readouterr().err


def test_fact_flags_in_range_still_work(data, capsys):
    assert main(["check", data, "--isolated", "--pad-id", "0", "--ignore-index", "-100",
                 "--vocab-size", "10", "--max-length", "4"]) in (0, 1)
