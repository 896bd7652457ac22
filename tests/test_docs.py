"""The documentation tells the truth: README.md, docs/ and CHANGELOG.md against the code.

Every setting in ``hostguard.conf.DEFAULTS``, every check id and every management
command has its section, with nothing documented that does not exist; the
``$ python manage.py …`` lines parse (and those shown with output print it against
the demo data); the README's curl examples get what they show from the demo site;
links between pages resolve; the site builds with warnings as errors; the changelog's
newest release is ``hostguard.__version__``; the package's long description carries
no relative links or images.
"""

from __future__ import annotations

import ast
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError
from django.test import Client

import hostguard
from hostguard.conf import DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent
DOCS = BASE_DIR / "docs"
README = BASE_DIR / "README.md"
CHANGELOG = BASE_DIR / "CHANGELOG.md"
PAGES = sorted(DOCS.glob("*.md"))
# The README and the docs pages: everything a reader is told.
TOLD = [README, *PAGES]

_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<language>[\w{}-]*)\n(?P<body>.*?)^(?P=indent)```$", re.MULTILINE | re.DOTALL
)
_SETTING = re.compile(r"\bHOSTGUARD_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
_CHECK_ID = re.compile(r"\bhostguard\.[A-Z]\d{3}\b")


# --- reading Markdown -----------------------------------------------------------------


@dataclass
class Command:
    line: str
    argv: list[str]
    expected: list[str] = field(default_factory=list)


def fenced(path: Path, language: str) -> list[str]:
    """The bodies of a page's fenced blocks in ``language``, dedented."""
    blocks = []
    for match in _FENCE.finditer(path.read_text()):
        if match["language"] == language:
            indent = len(match["indent"])
            blocks.append("".join(line[indent:] for line in match["body"].splitlines(keepends=True)))
    return blocks


def console_commands(path: Path) -> list[Command]:
    """``$ command`` lines of a page's console blocks, each with the output lines under it."""
    found: list[Command] = []
    for block in fenced(path, "console"):
        current: Command | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = Command(line[2:], shlex.split(line[2:]))
                found.append(current)
            elif line.strip() and current is not None:
                current.expected.append(line.rstrip())
            elif not line.strip():
                current = None
    return found


def sections(path: Path, level: str = "##") -> dict[str, str]:
    """Headings of one level (their text, backticks dropped) → the text up to the next one."""
    parts = re.split(rf"^{level} (.+)$", path.read_text(), flags=re.MULTILINE)
    return {title.strip().strip("`"): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def slug(heading: str) -> str:
    """The anchor GitHub and MyST give a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {slug(match[1]) for match in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def matches(expected: list[str], printed: list[str]) -> bool:
    """Whether ``printed`` shows the ``expected`` lines in order; a ``...`` line stands for any lines."""
    position = 0
    skipping = False
    for line in expected:
        if line.strip() == "...":
            skipping = True
            continue
        while position < len(printed) and printed[position].rstrip() != line.rstrip():
            if not skipping:
                return False
            position += 1
        if position == len(printed):
            return False
        position += 1
        skipping = False
    return True


def test_the_output_matcher_can_fail() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert not matches(["a", "d"], ["a", "b", "c", "d"])
    assert not matches(["a", "...", "e"], ["a", "b", "c", "d"])


# --- settings -------------------------------------------------------------------------


def test_every_setting_is_documented_with_its_default() -> None:
    documented = sections(DOCS / "settings.md")
    settings_documented = {name for name in documented if name.startswith("HOSTGUARD_")}
    assert settings_documented == set(DEFAULTS), "docs/settings.md and hostguard.conf.DEFAULTS disagree"
    summary = (DOCS / "settings.md").read_text().split("\n## ", 1)[0]
    for name, default in DEFAULTS.items():
        text = documented[name]
        assert f"[`{name}`](#{slug(name)})" in summary, f"{name} is missing from the table at the top"
        stated = re.search(r"Default: `([^`]+)`", text)
        assert stated, f"docs/settings.md: {name} states no default"
        assert ast.literal_eval(stated[1]) == default, f"docs/settings.md: {name}'s default is {default!r}"
        assert "```python" in text, f"docs/settings.md: {name} has no example"


def _demo_environment_variables() -> set[str]:
    """HOSTGUARD_* names the demo site reads from its environment (project/settings.py)."""
    source = (BASE_DIR / "project" / "settings.py").read_text()
    return set(re.findall(r'env\.\w+\("(HOSTGUARD_\w+)"', source))


def test_every_variable_the_demo_reads_is_documented() -> None:
    source = (BASE_DIR / "project" / "settings.py").read_text()
    variables = set(re.findall(r'env\.\w+\("([A-Z_]+)"', source))
    assert {"DATABASE_URL", "HOSTGUARD_DEPLOYMENT"} <= variables
    table = sections(DOCS / "deploying.md")["The demo site's environment"]
    for variable in variables:
        assert f"| `{variable}` |" in table, f"docs/deploying.md does not list {variable}"


def test_the_docs_name_only_settings_that_exist() -> None:
    known = set(DEFAULTS) | _demo_environment_variables()
    for path in TOLD:
        unknown = set(_SETTING.findall(path.read_text())) - known
        assert not unknown, f"{path.name} names settings hostguard does not have: {sorted(unknown)}"


def test_the_settings_examples_are_valid_settings() -> None:
    """Each python example of docs/settings.md assigns the setting of its section a value of its type."""
    for name, text in sections(DOCS / "settings.md").items():
        if name not in DEFAULTS:
            continue
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
            tree = ast.parse(block)
            (assignment,) = tree.body
            assert isinstance(assignment, ast.Assign)
            assert [target.id for target in assignment.targets if isinstance(target, ast.Name)] == [name]
            value = ast.literal_eval(assignment.value)
            default = DEFAULTS[name]
            if default is not None:
                assert isinstance(value, type(default)), f"{name} = {value!r}"


# --- checks ---------------------------------------------------------------------------


def registered_check_ids() -> set[str]:
    ids: set[str] = set()
    for source in (BASE_DIR / "hostguard").rglob("*.py"):
        ids |= set(re.findall(r'\bid="(hostguard\.[A-Z]\d{3})"', source.read_text()))
    return ids


def test_every_check_is_documented_with_its_fix() -> None:
    ids = registered_check_ids()
    assert len(ids) >= 10
    documented = {title: text for title, text in sections(DOCS / "checks.md").items() if _CHECK_ID.fullmatch(title)}
    assert set(documented) == ids, "docs/checks.md and the check ids in hostguard/ disagree"
    for check_id, text in documented.items():
        fix = re.search(r"\*\*Fix:\*\* (\S.+)", text)
        assert fix, f"docs/checks.md: {check_id} has no **Fix:**"
        assert f"[`{check_id}`](#{slug(check_id)})" in (DOCS / "checks.md").read_text()


def test_the_docs_name_only_checks_that_exist() -> None:
    ids = registered_check_ids()
    for path in [*TOLD, CHANGELOG]:
        text = path.read_text()
        named = set(_CHECK_ID.findall(text))
        # "E001–E013": ranges in the changelog name the ids at both ends.
        named |= {f"hostguard.{end}" for end in re.findall(r"[–-]`?([EW]\d{3})\b", text)}
        assert named <= ids, f"{path.name} names checks that do not exist: {sorted(named - ids)}"


# --- commands -------------------------------------------------------------------------


def hostguard_commands() -> list[str]:
    return sorted(name for name, app in get_commands().items() if app == "hostguard")


def _base_options() -> set[str]:
    parser = BaseCommand().create_parser("manage.py", "base")
    return {option for action in parser._actions for option in action.option_strings}


def test_every_command_and_option_is_documented() -> None:
    commands = hostguard_commands()
    assert len(commands) >= 5
    documented = {
        title: text for title, text in sections(DOCS / "commands.md").items() if title.startswith("hostguard_")
    }
    assert set(documented) == set(commands), "docs/commands.md and the hostguard_* commands disagree"
    base = _base_options()
    for name in commands:
        parser = load_command_class("hostguard", name).create_parser("manage.py", name)
        for action in parser._actions:
            options = [option for option in action.option_strings if option not in base]
            if options:
                assert any(option in documented[name] for option in options), (
                    f"docs/commands.md: {name} does not mention {options[-1]}"
                )


def manage_py_lines() -> list[tuple[Path, Command]]:
    found = []
    for path in TOLD:
        for command in console_commands(path):
            if command.argv[:2] == ["python", "manage.py"]:
                found.append((path, command))
    return found


def as_params(lines: list[tuple[Path, Command]]) -> list[Any]:
    return [pytest.param(path, command, id=f"{path.name}: {command.line}") for path, command in lines]


def test_the_docs_show_manage_py_commands() -> None:
    shown = {command.argv[2] for _, command in manage_py_lines()}
    assert set(hostguard_commands()) <= shown, "every hostguard command has an example to copy"


@pytest.mark.parametrize(("path", "command"), as_params(manage_py_lines()))
def test_each_manage_py_line_parses(path: Path, command: Command) -> None:
    name, *args = command.argv[2:]
    app = get_commands().get(name)
    assert app is not None, f"{path.name}: no command {name!r}"
    parser = load_command_class(app, name).create_parser("manage.py", name)
    try:
        parser.parse_args(args)
    except CommandError as exc:
        pytest.fail(f"{path.name}: `{command.line}`: {exc}")


def manage_py_lines_with_output() -> list[tuple[Path, Command]]:
    return [(path, command) for path, command in manage_py_lines() if command.expected]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "command"), manage_py_lines_with_output(), ids=lambda value: getattr(value, "line", "")
)
def test_each_manage_py_line_prints_what_the_docs_show(path: Path, command: Command) -> None:
    call_command("hostguard_demo", stdout=io.StringIO())
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*command.argv[2:], stdout=out, stderr=err)
    except CommandError as exc:  # hostguard_check's 421 and 400 exit with a status
        err.write(f"CommandError: {exc}\n")
    printed = (out.getvalue() + err.getvalue()).splitlines()
    assert matches(command.expected, printed), f"{path.name}: `{command.line}` printed:\n" + "\n".join(printed)


# --- the README's curl examples against the demo site -----------------------------------


def curl_examples() -> list[Command]:
    found = [command for command in console_commands(README) if command.argv[0] == "curl" and "-si" in command.argv]
    return found


def _same_json(expected: Any, actual: Any) -> bool:
    if expected == "...":
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_same_json(value, actual[key]) for key, value in expected.items())
        )
    return bool(expected == actual)


def test_the_readme_has_curl_examples_of_each_answer() -> None:
    statuses = {command.expected[0].split()[1] for command in curl_examples()}
    assert statuses == {"200", "400", "421"}


@pytest.mark.django_db
@pytest.mark.parametrize("command", curl_examples(), ids=lambda command: command.line)
def test_each_readme_curl_example_gets_what_it_shows(command: Command) -> None:
    call_command("hostguard_demo", stdout=io.StringIO())
    argv = command.argv[1:]
    headers = {}
    while argv[0].startswith("-"):
        option = argv.pop(0)
        if option == "-H":
            name, _, value = argv.pop(0).partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            assert option == "-si", f"the test cannot follow {command.line}"
    (url,) = argv
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", 8000), "make run's address"
    response = Client().get(parts.path, headers=headers)

    status_line, *rest = command.expected
    assert status_line == f"HTTP/1.1 {response.status_code} {response.reason_phrase}"
    body = [line for line in rest if line.startswith("{")]
    for line in rest:
        if line == "..." or line in body:
            continue
        name, _, value = line.partition(": ")
        assert response.headers.get(name) == value, f"{command.line}: {name}"
    if body:
        (expected,) = body
        assert _same_json(json.loads(expected), json.loads(response.content)), response.content


# --- links, the site, the changelog, the package --------------------------------------


def relative_links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    return [link for link in links if not urlsplit(link).scheme]


@pytest.mark.parametrize("path", [README, CHANGELOG], ids=lambda path: path.name)
def test_the_front_page_links_resolve(path: Path) -> None:
    """README and CHANGELOG are read on the forge too: their links must reach a file and heading."""
    links = relative_links(path)
    for link in links:
        target, _, fragment = link.partition("#")
        page = (path.parent / unquote(target)).resolve() if target else path
        assert page.exists(), f"{path.name} links to a missing {link}"
        if fragment and page.suffix == ".md":
            assert fragment in anchors(page), f"{path.name} links to a missing heading: {link}"
    if path == README:
        linked = {Path(link.partition("#")[0]).name for link in links if link.startswith("docs/")}
        assert {"index.md", "settings.md", "checks.md", "commands.md", "install.md"} <= linked


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value:
                self.hrefs.append(value)


def test_the_site_builds_without_warnings_and_its_links_resolve(tmp_path: Path) -> None:
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = {page: _Links() for page in out.rglob("*.html")}
    for page, links in pages.items():
        links.feed(page.read_text())
    for page, links in pages.items():
        for href in links.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc:
                continue  # outside links are not followed: CI has no network
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            assert target.exists(), f"{page.name} links to a missing {href}"
            if parts.fragment and target in pages:
                assert parts.fragment in pages[target].ids, f"{page.name} links to a missing anchor {href}"
    for name in ("settings", "checks", "commands", "admin", "audit", "deploying", "performance", "changelog"):
        assert out / f"{name}.html" in pages


def test_the_newest_release_in_the_changelog_is_the_version() -> None:
    headings = re.findall(r"^## (.+)$", CHANGELOG.read_text(), flags=re.MULTILINE)
    assert headings, "CHANGELOG.md has no entries"
    releases = [heading for heading in headings if heading != "[Unreleased]"]
    assert headings[0] in ("[Unreleased]", releases[0]), "Unreleased, if present, comes first"
    newest = re.fullmatch(r"\[(\d+\.\d+\.\d+[\w.]*)\] - (\d{4}-\d{2}-\d{2})", releases[0])
    assert newest, f"a release heading reads ## [X.Y.Z] - YYYY-MM-DD, not {releases[0]!r}"
    assert newest[1] == hostguard.__version__


def test_the_package_description_has_no_relative_links_or_images() -> None:
    project = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]
    readme = project["readme"]
    text = readme["text"] if isinstance(readme, dict) else (BASE_DIR / readme).read_text()
    assert "![" not in text
    assert "<img" not in text.lower()
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        assert urlsplit(link).scheme in ("http", "https"), f"the long description links to {link}"
    for label, url in project.get("urls", {}).items():
        assert urlsplit(url).scheme == "https", f"project URL {label} must be an https address"
