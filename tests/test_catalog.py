"""The catalogue: built-in rules from its module list, user rules added with labellint.rule."""

import pathlib

import pytest

import labellint
from labellint import catalog, registry

RULE_MODULES = pathlib.Path(catalog.__file__).parent / "rules"


def test_every_rule_module_is_listed_once_and_every_built_in_rule_comes_from_one():
    listed = [m.__name__.rsplit(".", 1)[1] for m in catalog.BUILTIN_MODULES]
    on_disk = sorted(p.stem for p in RULE_MODULES.glob("*.py") if p.stem != "__init__")
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)
    from_modules = [r.code for m in catalog.BUILTIN_MODULES for r in catalog.rules_of(m)]
    assert sorted(from_modules) == sorted(catalog.BUILTIN)
    assert [r.code for r in labellint.all_rules()] == sorted(from_modules)


def test_a_rule_module_yields_only_the_rules_it_defines_in_definition_order():
    import types

    from labellint.rules import labels

    module = types.ModuleType("labellint.rules.scratch")

    def made(code, name):
        func = registry.rule(code, name, severity="error", per="row", message="m",
                             fix="f")(lambda b: b)
        func.__module__ = module.__name__
        return func

    module.not_a_rule = len
    module.b = made("LL991", "scratch-one")
    module.imported = next(obj for obj in vars(labels).values() if registry.rule_of(obj))
    module.a = made("LL990", "scratch-two")
    assert [r.code for r in catalog.rules_of(module)] == ["LL991", "LL990"]


def test_registry_rule_attaches_the_rule_and_registers_nothing():
    before = [r.code for r in labellint.all_rules()]

    @registry.rule("LL951", "not-registered", severity="warning", per="row",
                   message="m", fix="f", requires=("labels",))
    def pred(b, *, limit=3):
        """Rows over a limit."""
        return b

    assert registry.rule_of(pred) == pred.rule
    assert (pred.rule.code, pred.rule.options, pred.rule.requires, pred.rule.summary) == (
        "LL951", {"limit": 3}, ("labels",), "Rows over a limit.")
    assert [r.code for r in labellint.all_rules()] == before
    with pytest.raises(labellint.LabelLintError, match="no rule 'LL951'"):
        labellint.get_rule("LL951")


def test_a_users_rule_joins_the_catalogue_until_removed():
    @labellint.rule("LL952", "user-rule", severity="warning", per="batch", message="m", fix="f")
    def user_rule(b):
        """A user's rule."""
        return False

    try:
        assert labellint.get_rule("user-rule") is user_rule.rule
        assert "LL952" in [r.code for r in labellint.select_rules(["LL95"])]
    finally:
        assert catalog.remove("LL952") is user_rule.rule
    assert "LL952" not in [r.code for r in labellint.all_rules()]
    with pytest.raises(labellint.LabelLintError, match="was added with labellint.rule"):
        catalog.remove("LL952")
    with pytest.raises(labellint.LabelLintError, match="was added with labellint.rule"):
        catalog.remove("LL101")


@pytest.mark.parametrize("code, name", [("LL101", "fresh-name"), ("LL953", None)])
def test_a_users_rule_may_not_take_a_code_or_name_already_used(code, name):
    taken = labellint.get_rule("LL101")
    decorate = labellint.rule(code, name or taken.name, severity="error", per="row",
                              message="m", fix="f")
    with pytest.raises(ValueError, match="registered twice"):
        decorate(lambda b: b)
    assert labellint.get_rule("LL101") is taken
    assert code == "LL101" or code not in [r.code for r in labellint.all_rules()]
