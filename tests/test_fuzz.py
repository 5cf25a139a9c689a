"""Property-based fuzz of the budget and task parsers: any input either loads or raises the domain error.

Inputs are random YAML documents, random text, and valid budgets/tasks with one part replaced, dropped or added.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedistill.budget import load_budget
from edgedistill.errors import EdgedistillError
from edgedistill.task import load_task

REPO = Path(__file__).resolve().parents[1]
BUDGET = yaml.safe_load((REPO / "budgets" / "demo-cpu.yaml").read_text())
BUDGET["target"]["recipe"] = str(REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml")
TASK = yaml.safe_load((REPO / "tasks" / "demo-mnist.yaml").read_text())

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a nested dict/list document."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with one node replaced by a random value, deleted, or given an extra key."""
    doc = yaml.safe_load(yaml.safe_dump(base))
    path = draw(st.sampled_from(_paths(doc)[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(values)
    return doc


def _load(loader: Any, text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            loader(path)
        except EdgedistillError as e:  # the only acceptable failure: one line naming the file
            msg = str(e)
            assert msg and "\n" not in msg.strip() and "fuzz.yaml" in msg, msg


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


@FUZZ
@given(mutated(BUDGET))
def test_fuzz_budget_mutations(doc: Any) -> None:
    _load(load_budget, _dump(doc))


@FUZZ
@given(mutated(TASK))
def test_fuzz_task_mutations(doc: Any) -> None:
    _load(load_task, _dump(doc))


@FUZZ
@given(st.one_of(values, st.dictionaries(st.sampled_from(sorted(BUDGET)), values, max_size=6)))
def test_fuzz_budget_documents(doc: Any) -> None:
    _load(load_budget, _dump(doc))


@FUZZ
@given(st.one_of(values, st.dictionaries(st.sampled_from(sorted(TASK)), values, max_size=5)))
def test_fuzz_task_documents(doc: Any) -> None:
    _load(load_task, _dump(doc))


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_raw_text(text: str) -> None:
    _load(load_budget, text)
    _load(load_task, text)
