"""The MkDocs hook that drops Sphinx roles from rendered docstrings, keeping the names as code."""

import importlib.util
from pathlib import Path

HOOK_PATH = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "docstring_roles.py"


def load_hook():
    spec = importlib.util.spec_from_file_location("docstring_roles_hook", HOOK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roles_are_dropped_and_names_stay_code():
    hook = load_hook()
    html = ("see :func:<code>resolve_model</code> and :class:<code>~paretoalign.tpo.LabelLedger</code>; "
            "a plain <code>:func:</code> stays")
    assert hook.strip_roles(html) == (
        "see <code>resolve_model</code> and <code>paretoalign.tpo.LabelLedger</code>; a plain <code>:func:</code> stays"
    )
