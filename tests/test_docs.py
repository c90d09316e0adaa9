"""The docs cannot drift from the code: the generated pages (CLI reference, record fields) equal what the
code generates now, the README stays short, and every relative link in the README and docs/ leads to a
file that exists. (`make docs` builds the site with mkdocs --strict, which also checks anchors.)"""
import argparse
import os
import re

import pytest

from gradbench import docs_pages
from gradbench.cli import build_parser
from gradbench.schema import SCHEMA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_MAX_LINES = 250
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target): inline links; images and autolinks aside


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _markdown_files() -> list[str]:
    found = [README]
    for folder, _, files in os.walk(os.path.join(ROOT, "docs")):
        found += [os.path.join(folder, name) for name in sorted(files) if name.endswith(".md")]
    return found


@pytest.mark.parametrize("path", sorted(docs_pages.pages()))
def test_generated_page_equals_what_the_code_generates(path):
    assert _read(os.path.join(ROOT, path)) == docs_pages.pages()[path], \
        f"{path} is stale: run `make docs` (python -m gradbench.docs_pages) and commit the page"


def test_cli_reference_names_every_command_and_option():
    page = docs_pages.cli_markdown()
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in sub.choices.items():
        assert f"\n## {name}\n" in page, name
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page, f"{name} {option}"


def test_cli_reference_follows_a_new_option():
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub.choices["env"].add_argument("--made-up-flag", help="a flag %(prog)s lacks | for now")
    page = docs_pages.cli_markdown(parser)
    assert "| `--made-up-flag` | `MADE_UP_FLAG` | a flag gradbench env lacks \\| for now |" in page
    assert page != docs_pages.cli_markdown()


def test_record_reference_holds_the_schema_table_and_every_field():
    page = docs_pages.record_markdown()
    from gradbench.schema import schema_markdown

    assert schema_markdown() in page
    for name, meta in SCHEMA.items():
        assert f"| `{name}` | {meta['group']} | {meta['kind']} |" in page, name


def test_readme_is_short():
    lines = _read(README).count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, more than {README_MAX_LINES}: move some to docs/"


def test_readme_has_the_sample_answer_markers():
    text = _read(README)
    start, end = "<!-- sample-answer:start -->", "<!-- sample-answer:end -->"
    assert start in text and end in text and text.index(start) < text.index(end)


def _broken_links(paths: list[str]) -> list[str]:
    """'file: target' for each relative link in ``paths`` whose file does not exist (URLs, in-page
    anchors and code blocks aside; an anchor on another page is left to mkdocs --strict)."""
    broken = []
    for path in paths:
        text = re.sub(r"```.*?```", "", _read(path), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), target.split("#", 1)[0]))):
                broken.append(f"{os.path.basename(path)}: {target}")
    return broken


def test_every_relative_link_points_to_an_existing_file():
    broken = _broken_links(_markdown_files())
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_the_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "there.md").write_text("# there\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](sub/there.md) [gone](missing.md#x) [web](https://example.org) [here](#top)\n"
                    "```\n[in code](nowhere.md)\n```\n[up](../page-not-here.md)\n")
    assert _broken_links([str(page)]) == ["page.md: missing.md#x", "page.md: ../page-not-here.md"]


def test_readme_sample_rows_are_what_the_sample_results_say():
    """The README's sample table is the answer for BERT-base in results/sample/reference-cpu.jsonl, cell for
    cell: a claim about numbers that the committed results back."""
    from gradbench.report.answer import answer
    from gradbench.results import load

    df = load([os.path.join(ROOT, "results", "sample", "reference-cpu.jsonl")])
    table = answer(df[(df["model"] == "bert") & (df["size"] == "base")]).table
    text = _read(README)
    block = text[text.index("<!-- sample-answer:start -->"):text.index("<!-- sample-answer:end -->")]
    rows = [line.strip("|").split("|") for line in block.splitlines() if line.startswith("| ") and "---" not in line]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    assert [r[0].strip() for r in body] == list(table.index)
    for row in body:
        for column, cell in zip(header[1:], row[1:]):
            assert cell.strip() == str(table.loc[row[0].strip(), column]), (row[0], column)
