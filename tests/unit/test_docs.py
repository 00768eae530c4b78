"""The docs build and read as docs: `mkdocs build --strict` (a broken link or anchor, or a page left out of the
nav, fails it), a README that fits the first screens, and no word of the project's own history in any page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's notice about its successor, every build
HISTORY = re.compile(r"\bissue \d+|\bstop[- ]\d+|\bthe seed\b|\bseed's", re.IGNORECASE)
README_MAX_LINES = 200


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=QUIET)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "http-api" / "index.html").is_file()


def test_a_page_left_out_of_the_nav_fails_the_build(tmp_path: Path) -> None:
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {tmp_path / 'docs'}")
    (tmp_path / "docs").mkdir()
    for page in (ROOT / "docs").iterdir():
        (tmp_path / "docs" / page.name).symlink_to(page)
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    (tmp_path / "mkdocs.yml").write_text(config)
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=QUIET)
    assert done.returncode != 0 and "orphan.md" in done.stderr


def test_the_readme_fits_the_first_screens() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_no_page_speaks_of_the_project_history() -> None:
    found = [f"{page.relative_to(ROOT)}:{number}: {line.strip()}" for page in PAGES
             for number, line in enumerate(page.read_text().splitlines(), 1) if HISTORY.search(line)]
    assert not found, "\n".join(found)
