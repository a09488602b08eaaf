"""scripts/mutation_check.py stays able to break what it guards: each mutation still finds its code once.

Running the mutations takes half an hour and is not part of `make test`; a mutation whose code
has since changed would only say STALE when someone runs it. Here every one is checked in seconds.
"""
import importlib.util
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
mutation_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_check)


@pytest.mark.parametrize("path, original, broken, arguments, what", mutation_check.MUTATIONS,
                         ids=[m[4] for m in mutation_check.MUTATIONS])
def test_each_mutation_finds_its_code_once_still_compiles_and_names_a_test_that_exists(
        path, original, broken, arguments, what):
    source = (ROOT / "sam2_ros" / path).read_text()
    assert source.count(original) == 1, f"{what}: update the mutation to the code of {path}"
    assert broken != original
    mutated = source.replace(original, broken)  # caught by its test, not by a syntax error:
    if path.endswith(".py"):
        compile(mutated, path, "exec")
    elif path.endswith(".xml"):
        ElementTree.fromstring(mutated)
    test_file = arguments.split()[0]
    assert (ROOT / "sam2_ros" / test_file).is_file(), f"{what}: {test_file} is gone"
