"""scripts/add_rule.py writes a new rule's page and predicate stub, which the catalogue then
lists, and refuses a code or name already taken; it runs on a copy, never on this repository."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture
def copy(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "labellint", repo / "labellint",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules", repo / "rules")
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    return repo


def add_rule(repo, *args):
    return subprocess.run([sys.executable, str(repo / "scripts" / "add_rule.py"), *args,
                           "--root", str(repo)], capture_output=True, text=True)


def test_the_scaffold_writes_a_page_and_a_stub_the_catalogue_lists(copy):
    done = add_rule(copy, "LL199", "made-up-pattern", "--family", "labels")
    assert done.returncode == 0, done.stderr
    page = (copy / "rules" / "LL199-made-up-pattern.md").read_text()
    assert page.startswith("# LL199 made-up-pattern\n") and "# expect: LL199" in page
    listed = subprocess.run(
        [sys.executable, "-c", "from labellint.catalog import get_rule; "
         "r = get_rule('LL199'); print(r.name, r.page)"],
        capture_output=True, text=True, cwd=copy, env={"PYTHONPATH": str(copy)})
    assert listed.stdout.split() == ["made-up-pattern", "LL199-made-up-pattern.md"], listed.stderr


@pytest.mark.parametrize("args, says", [
    (("LL105", "another-name", "--family", "labels"), "LL105 already taken"),
    (("LL199", "few-supervised-tokens", "--family", "labels"), "few-supervised-tokens already"),
    (("LL199", "made-up", "--family", "nosuch"), "no rule family 'nosuch'"),
    (("L199", "made-up", "--family", "labels"), "not a code"),
])
def test_the_scaffold_refuses_what_is_taken_or_malformed(copy, args, says):
    before = (copy / "labellint" / "rules" / "labels.py").read_text()
    done = add_rule(copy, *args)
    assert done.returncode != 0 and says in done.stderr
    assert (copy / "labellint" / "rules" / "labels.py").read_text() == before
