"""What lstmgen's code may do with files it reads: plain data only, never code. Checked on the source itself."""

import ast
from pathlib import Path

import lstmgen

SOURCES = sorted(Path(lstmgen.__file__).parent.glob("*.py"))


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_unpickling_eval_or_exec_anywhere():
    banned = {"eval", "exec", "compile", "pickle.load", "pickle.loads", "yaml.unsafe_load", "yaml.full_load",
              "marshal.loads", "__import__", "os.system"}  # fmt: skip
    found = [
        f"{path.name}:{node.lineno} {name}"
        for path in SOURCES
        for node, name in calls(ast.parse(path.read_text()))
        if name in banned
        or name == "yaml.load"  # only with a SafeLoader: plain data, no Python objects
        and not any(k.arg == "Loader" and ast.unparse(k.value).endswith("SafeLoader") for k in node.keywords)
    ]
    assert found == []


def test_every_torch_load_is_weights_only():
    loads = [
        (path.name, node)
        for path in SOURCES
        for node, name in calls(ast.parse(path.read_text()))
        if name.endswith("torch.load") or name == "load" and path.name == "registry.py"
    ]
    assert loads, "the registry loads checkpoints with torch.load"
    for where, node in loads:
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
