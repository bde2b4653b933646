"""The contract lives in the repository: docs/api.md describes every operation that
``/openapi.json`` publishes, and README and docs/ point at nothing outside the clone."""

from __future__ import annotations

import re
from pathlib import Path

from support.livechat_app import livechat_app

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"


def documented_operations(text: str) -> set[tuple[str, str]]:
    """Every ``METHOD /path`` written in code spans of a Markdown page (query strings and
    trailing ``[...]`` options dropped)."""
    found = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        match = re.fullmatch(r"(GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*)", span)
        if match:
            found.add((match.group(1), re.split(r"[?\[]", match.group(2))[0]))
    return found


async def test_every_published_operation_is_in_docs_api_md(tmp_path: Path) -> None:
    """Each (method, path) of /openapi.json appears in docs/api.md as ``METHOD /path``."""
    async with livechat_app(tmp_path) as running:
        document = (await running.client.get("/openapi.json")).json()
    published = {(method.upper(), path) for path, operations in document["paths"].items()
                 for method in operations}
    assert len(published) > 30
    missing = published - documented_operations(API_DOC.read_text())
    assert not missing, f"not described in docs/api.md: {sorted(missing)}"


def test_readme_and_docs_point_only_inside_the_repository() -> None:
    """No link or mention of the sibling ``shared`` folder, and every relative link of
    README and docs/ names a file that exists."""
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "../shared" not in text, page.name
        assert "/work/" not in text, page.name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+://", target):
                assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_contract_pages_are_linked_from_the_readme() -> None:
    """A newcomer finds the contract, the design notes and operations from the README."""
    readme = (ROOT / "README.md").read_text()
    for page in ("docs/api.md", "docs/design.md", "docs/operations.md", "docs/decisions.md",
                 "CHANGELOG.md"):
        assert f"]({page})" in readme, page
