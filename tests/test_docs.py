"""docs/: generated pages match the catalogue, every decision is there with its sources, links stay inside
the repository, and `explain` prints the entries."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from conformance.catalogue import (
    decisions_markdown,
    doc_link,
    explain,
    load_catalogue,
    load_decisions,
    requirements_markdown,
)
from conformance.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REGENERATE = "regenerate with: python -m conformance.catalogue docs"


def test_requirements_page_is_generated_from_the_catalogue():
    assert (DOCS / "requirements.md").read_text(encoding="utf-8") == requirements_markdown(), REGENERATE


def test_decisions_page_is_generated_from_the_decisions():
    assert (DOCS / "decisions.md").read_text(encoding="utf-8") == decisions_markdown(), REGENERATE


def test_every_requirement_and_decision_has_an_entry():
    text = (DOCS / "requirements.md").read_text(encoding="utf-8")
    assert all(f"\n### {req.id}\n" in text for req in load_catalogue())
    decisions = load_decisions()
    assert list(decisions) == [f"D{n}" for n in range(1, 37)]
    page = (DOCS / "decisions.md").read_text(encoding="utf-8")
    for d in decisions.values():
        assert f"\n### {d.id}\n" in page
        assert d.point and d.reading and d.verdicts and d.sources, d.id
        assert d.requirements and all(r in load_catalogue() for r in d.requirements), d.id


def test_every_decision_a_requirement_names_exists():
    decisions = load_decisions()
    for req in load_catalogue():
        assert set(req.decisions) <= set(decisions), req.id


def test_doc_links():
    assert doc_link("FMT-04") == "requirements.md#fmt-04"
    assert doc_link("D33", "../docs/") == "../docs/decisions.md#d33"
    assert doc_link("XYZ-01") is None


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))


def test_links_in_readme_and_docs_stay_inside_the_repository():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "shared/spec" not in text, page  # the rules are in docs/, not beside the checkout
        for link in _links(page):
            if link.startswith(("http://", "https://", "#")):
                continue
            target = (page.parent / link.split("#", 1)[0]).resolve()
            assert target.is_relative_to(ROOT) and target.exists(), (page.name, link)


def test_anchors_of_generated_links_exist():
    pages = {p.name: p.read_text(encoding="utf-8") for p in DOCS.glob("*.md")}
    headings = {name: {h.lower() for h in re.findall(r"^#{2,3} (\S+)$", text, re.M)} for name, text in pages.items()}
    for name, text in pages.items():
        for page, frag in re.findall(r"\]\(([a-z-]+\.md)#([a-z0-9-]+)\)", text):
            if re.fullmatch(r"[a-z]{3}-\d{2}|d\d+", frag):
                assert frag in headings[page], (name, page, frag)


def test_explain_prints_a_decision_and_a_requirement():
    result = CliRunner().invoke(main, ["explain", "D33"])
    assert result.exit_code == 0
    assert result.output.startswith("D33: ") and "FMT-04" in result.output and "Sources:" in result.output
    result = CliRunner().invoke(main, ["explain", "FMT-04"])
    assert result.exit_code == 0
    assert result.output.startswith("FMT-04 ") and load_catalogue().get("FMT-04").statement in result.output
    assert "D33" in result.output and "docs/requirements.md#fmt-04" in result.output
    assert explain("fmt-04") == explain("FMT-04")
