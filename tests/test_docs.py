"""Documentation: README size, links and anchors, one page per command with every option and its Python call,
the MkDocs nav, no reference to files outside the repository, and the strict MkDocs build."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import typer
import yaml

import edgedistill

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MARKDOWN = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *PAGES]

# CLI command → its page and the Python calls the page must show.
COMMAND_PAGES = {
    "train": ("train.md", ["ed.train("]),
    "search": ("search.md", ["ed.search("]),
    "profile": ("profile.md", ["ed.profile("]),
    "export": ("export.md", ["ed.export("]),
    "bench": ("bench.md", ["ed.bench(", "ed.emit_runner("]),
    "report": ("report.md", ["ed.report("]),
    "teachers": ("teachers.md", ["ed.rank_teachers(", "ed.finetune_teacher("]),
    "budgets": ("budgets.md", ["ed.budgets(", "ed.load_budget("]),
}

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(title: str) -> str:
    """Python-Markdown's toc slug (what MkDocs and the anchors in these pages use)."""
    text = re.sub(r"`|\*\*", "", title)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m[1]) for m in re.finditer(r"^#+\s+(.+?)\s*$", text, re.M)}


def _links(page: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8")))


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the details into docs/"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not checked offline
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.relative_to(ROOT)}: link to {link!r}: no such file"
        assert ROOT in path.parents or path == ROOT, f"{page.relative_to(ROOT)}: {link!r} leaves the repository"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.relative_to(ROOT)}: {link!r}: no heading with that anchor"


def test_source_paths_in_the_docs_exist() -> None:
    """Every `edgedistill/...`, `tests/...` or top-level `bench/*.py` path in inline code names a file that exists."""
    path = re.compile(r"(?<![\w/])(?:edgedistill/[\w/]+\.(?:py|yaml)|tests/\w+\.py|bench/\w+\.py)")
    for page in MARKDOWN:
        for span in re.findall(r"`([^`\n]+)`", _FENCE.sub("", page.read_text(encoding="utf-8"))):
            for p in path.findall(span):
                assert (ROOT / p).is_file(), f"{page.relative_to(ROOT)}: `{p}` does not exist (moved or renamed?)"


def test_nav_lists_every_page() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]

    def entries(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [e for item in node for e in entries(item)]
        if isinstance(node, dict):
            return [e for value in node.values() for e in entries(value)]
        return []

    listed = entries(nav)
    assert sorted(listed) == sorted(str(p.relative_to(DOCS)) for p in PAGES)


def _commands() -> dict[str, list[tuple[str, object]]]:
    """Top-level command → [(full name, click command)], subcommands of a group under the group's name."""
    from edgedistill import cli

    cli._register()
    group = typer.main.get_command(cli.app)
    out: dict[str, list[tuple[str, object]]] = {}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out[name] = [(f"{name} {s}", c) for s, c in subs.items()] if subs else [(name, cmd)]
    return out


def test_every_command_has_a_page_with_every_option_and_its_python_call() -> None:
    commands = _commands()
    assert sorted(commands) == sorted(COMMAND_PAGES), "add the new command to docs/commands/ and COMMAND_PAGES"
    for top, subcommands in commands.items():
        page_name, calls = COMMAND_PAGES[top]
        text = (DOCS / "commands" / page_name).read_text(encoding="utf-8")
        for call in calls:
            assert call in text, f"docs/commands/{page_name}: no Python call {call}…)"
        for full_name, cmd in subcommands:
            assert f"edgedistill {full_name}" in text, f"docs/commands/{page_name}: no `edgedistill {full_name}`"
            for param in cmd.params:  # type: ignore[attr-defined]
                flags = [*param.opts, *getattr(param, "secondary_opts", [])]
                flags = [f for f in flags if f.startswith("--") and f != "--help"]
                if flags:  # `--warmup` must appear on its own, not only inside `--warmup-time`
                    found = any(re.search(re.escape(f) + r"(?![\w-])", text) for f in flags)
                    assert found, f"docs/commands/{page_name}: {full_name} {flags[0]} is not documented"


def test_python_names_in_the_docs_are_public() -> None:
    public = getattr(edgedistill, "__all__", None)
    if public is None:
        pytest.skip("edgedistill has no __all__ yet")
    for page in MARKDOWN:
        for name in set(re.findall(r"\bed\.([A-Za-z]\w*)", page.read_text(encoding="utf-8"))):
            assert name in public, f"{page.relative_to(ROOT)}: ed.{name} is not in edgedistill.__all__"


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [ROOT / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the usual outputs
        skip = {".git", ".venv", "runs", "site", "__pycache__"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".jpg", ".npy", ".onnx", ".safetensors"}]


def test_no_file_cites_a_file_outside_the_repository() -> None:
    # Built from pieces so that this file does not match itself.
    outside = re.compile(r"\b(?:" + "METHOD|DATA|DESIGN|STYLE" + r")\.md\b|\.\./" + "shared")
    machine = re.compile("/" + "work/|cpu" + r"\.lock|ed" + r"\.lock")
    bad = []
    for f in _tracked_text_files():
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if outside.search(line) or machine.search(line):
                bad.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not bad, "references to files outside the repository or to one machine's paths:\n" + "\n".join(bad)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the docs extra)")
def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
