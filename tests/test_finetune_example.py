"""examples/finetune, the training repo a user copies, keeps working: its tests pass with the
`labellint` fixture, and its training script trains on clean data and stops on planted bugs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Every test here trains with a Trainer or runs pytest in a process that imports
# transformers: `-m "not slow"` leaves them to CI.
pytestmark = pytest.mark.slow

pytest.importorskip("transformers")
pytest.importorskip("datasets")
EXAMPLE = Path(__file__).parent.parent / "examples" / "finetune"


@pytest.fixture
def repo(tmp_path):
    """A copy of the example, so that running it writes nothing into this repository."""
    copy = tmp_path / "finetune"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def run(repo, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)


def test_example_tests_pass_with_the_fixture(repo):
    # Its tests include one showing that the check fails on a collator that pads labels with
    # the pad id, so passing here is not vacuous.
    result = run(repo, "-m", "pytest", "-p", "no:cacheprovider", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_training_script_trains_on_clean_data(repo):
    result = run(repo, "train.py", "--steps", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trained 2 steps" in result.stdout


@pytest.mark.parametrize("bug, code", [("labels-on-padding", "LL103"), ("pad-is-eos", "LL403")])
def test_training_script_stops_on_a_planted_bug(repo, bug, code):
    result = run(repo, "train.py", "--bug", bug)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "training stopped before the first step" in result.stderr
    assert code in result.stderr
    assert "'loss'" not in result.stdout  # no optimizer step was logged
