"""MkDocs hook: Markdown files of the repository root as pages of the site, linked as GitHub links them.

A page in ``docs/`` links to ``BENCHMARKS.md`` as ``../BENCHMARKS.md``, the link that works where the Markdown is
read in the repository. The site has no file outside ``docs/``, so this hook adds each file of
:data:`REPOSITORY_PAGES` to the site from the repository root, the folder of ``mkdocs.yml`` (the file itself, not a
copy kept in ``docs/``), and points those links, anchors kept, at its page.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

#: Repository file (relative to the root) -> its place in the site (relative to ``docs/``).
REPOSITORY_PAGES = {"BENCHMARKS.md": "measurements.md"}

LINK_TARGET = re.compile(r"\]\((?P<path>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def repository_root(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def on_files(files, config):
    for repository_path, site_path in REPOSITORY_PAGES.items():
        files.append(File.generated(config, site_path, abs_src_path=str(repository_root(config) / repository_path)))
    return files


def site_link(target: str, page_path: str, docs_folder: str) -> str | None:
    """The link from the page ``page_path`` (relative to ``docs/``) to the site page of the repository file that
    ``target`` names, or None when it names none of :data:`REPOSITORY_PAGES`."""
    page_folder = posixpath.dirname(page_path)
    repository_path = posixpath.normpath(posixpath.join(docs_folder, page_folder, target))
    site_path = REPOSITORY_PAGES.get(repository_path)
    if site_path is None:
        return None
    return posixpath.relpath(site_path, page_folder or ".")


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri in REPOSITORY_PAGES.values():
        return markdown
    docs_folder = Path(config["docs_dir"]).resolve().relative_to(repository_root(config)).as_posix()

    def relinked(match: re.Match) -> str:
        link = site_link(match.group("path"), page.file.src_uri, docs_folder)
        if link is None:
            return match.group(0)
        return f"]({link}{match.group('anchor') or ''})"

    return LINK_TARGET.sub(relinked, markdown)
