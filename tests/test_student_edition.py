"""The student edition: no solution text anywhere in the output, exercises and stubs intact.

The slow test builds the whole student edition with ``tools/student_edition.py``
(every page executed) and greps every file of the site for text taken from the
solution blocks of the real sources. The solution text is extracted here with a
separate parser from the tool's, and each check has a positive control (text that
must be found), so a matcher that finds nothing cannot pass the test.
Set ROPEBOOK_STUDENT_SITE=path/to/html to test an existing student build.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import student_edition  # noqa: E402

TOC_PATH = Path(os.environ.get("ROPEBOOK_TOC", ROOT / "_toc.yml"))  # as in test_site.py: a few chapters for quick runs
TOC = yaml.safe_load(TOC_PATH.read_text())
PAGES = [TOC["root"]] + [c["file"] for part in TOC.get("parts", [TOC]) for c in part.get("chapters", [])]
SOURCES = {p: (ROOT / f"{p}.md").read_text(encoding="utf-8") for p in PAGES if (ROOT / f"{p}.md").is_file()}
OWN_CHAPTERS = [p for p in ["book/deriving-rope", "book/rope-d-dims"] if p in SOURCES]  # must have solutions

# --- an independent reading of the sources: regexes over the whole text ----------------

GATED = re.compile(r"^(`{3,}|:{3,})\{solution-start\}.*?^(`{3,}|:{3,})\{solution-end\}[^\n]*\n\2[ \t]*$", re.M | re.S)
SINGLE = re.compile(r"^(`{3,}|:{3,})\{solution\}.*?^\1[ \t]*$", re.M | re.S)
EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
STUB = re.compile(r"^\s*raise NotImplementedError.*$", re.M)


def solution_blocks(text: str) -> list[str]:
    return [m.group(0) for m in GATED.finditer(text)] + [m.group(0) for m in SINGLE.finditer(text)]


def outside_solutions(text: str) -> str:
    return SINGLE.sub("", GATED.sub("", text))


def squash(text: str) -> str:
    return " ".join(text.split())


def _plain(markdown: str) -> str:
    """Markdown outside code spans as it renders: links keep their text, emphasis marks go."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown).replace("*", "")


def prose_fragments(line: str) -> list[str]:
    """Plain-text runs of a markdown line that survive rendering verbatim (no maths, roles, quotes)."""
    line = re.sub(r"\{[\w:-]+\}`[^`]*`", "|", line)     # roles: {cite:p}`key`, {eq}`label`
    line = re.sub(r"\$\$?[^$]*\$\$?", "|", line)         # inline maths
    pieces = re.split(r"(`[^`]*`)", line)                # code spans are kept verbatim
    line = "".join(p[1:-1] if p.startswith("`") else _plain(p) for p in pieces)
    parts = re.split(r"[|\"'“”‘’—–]|--", line)
    return [squash(p) for p in parts if len(p.split()) >= 4 and len(squash(p)) >= 20]


def probes_from(block: str) -> list[str]:
    """Distinctive lines (code) and fragments (prose) of one solution block."""
    found, in_code = [], False
    for line in block.splitlines():
        bare = line.strip()
        fence = re.match(r"^(`{3,}|:{3,})", bare)
        if fence:
            in_code = "{code-cell}" in bare
            continue
        if not bare or bare.startswith(":") or (in_code and (bare == "---" or re.match(r"^[\w-]+:", bare) and not bare.startswith("def"))):
            continue
        if in_code:
            if len(bare) >= 20:
                found.append(squash(bare))
        else:
            found += prose_fragments(bare)
    return found


def collect() -> dict:
    """Probes per page, words only solutions use, and the positive controls."""
    outside_all = squash("\n".join(outside_solutions(t) for t in SOURCES.values()))
    probes: dict[str, list[str]] = {}
    exercise_fragments: dict[str, list[str]] = {}
    stubs: dict[str, list[str]] = {}
    for page, text in SOURCES.items():
        blocks = solution_blocks(text)
        if blocks:
            probes[page] = sorted({p for b in blocks for p in probes_from(b) if p not in outside_all})
        exercise_fragments[page] = [f for m in EXERCISE.finditer(outside_solutions(text)) for line in m.group(2).splitlines()
                                    if not line.startswith(":") for f in prose_fragments(line)]
        stubs[page] = [squash(m.group(0)) for m in STUB.finditer(outside_solutions(text))]
    return {"probes": probes, "exercise_fragments": exercise_fragments, "stubs": stubs, "outside": outside_all}


def index_stems(words) -> set[str]:
    from sphinx.search.en import SearchEnglish

    lang = SearchEnglish({})
    return {s for w in words if (s := lang.stem(w).lower()) and lang.word_filter(s) and len(s) >= 5 and not s.isdigit()}


# --- fast tests of the stripping itself -------------------------------------------------


def test_tool_doctests():
    """tools/ is outside pytest's doctest paths: run the tool's examples here."""
    import doctest

    failed, attempted = doctest.testmod(student_edition)
    assert attempted > 0 and failed == 0

PAGE = """intro
```{exercise} Title
:label: ex-a

Do the thing.
```

```{code-cell} ipython3
def f(x):
    raise NotImplementedError  # ~1 line
```

```{solution-start} ex-a
:class: dropdown
```

The secret explanation.

```{code-cell} ipython3
def f(x):
    return 42  # secret code
```

```{solution-end}
```

````{solution} ex-a
A single-block solution with a nested fence:
```python
secret_two = 2
```
````

outro
"""


def test_strip_removes_gated_and_single_solutions_and_keeps_exercises():
    stripped, removed = student_edition.strip_solutions(PAGE)
    assert "secret" not in stripped and "solution" not in stripped
    assert "Do the thing." in stripped and "raise NotImplementedError" in stripped
    assert stripped.startswith("intro") and stripped.rstrip().endswith("outro")
    assert "    return 42  # secret code\n" in removed and "secret_two = 2\n" in removed
    assert student_edition.strip_solutions(stripped) == (stripped, [])  # idempotent


@pytest.mark.parametrize(
    "page, words",
    [
        ("a\n```{solution-start} ex\n```\nsecret\n", ["never closed", ":2"]),
        ("a\n```{solution-end}\n```\n", ["without a {solution-start}", ":2"]),
        ("```{solution-start} a\n```\n```{solution-start} b\n```\n```{solution-end}\n```\n", ["inside the solution opened at line 1"]),
    ],
)
def test_strip_refuses_unbalanced_blocks(page, words):
    with pytest.raises(student_edition.StripError) as err:
        student_edition.strip_solutions(page, path="p.md")
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("page", list(SOURCES))
def test_every_real_page_strips_cleanly(page):
    stripped, _ = student_edition.strip_solutions(SOURCES[page], path=page)
    assert "{solution" not in stripped
    assert len(EXERCISE.findall(stripped)) == len(EXERCISE.findall(SOURCES[page])), "an exercise was removed with a solution"
    assert squash(outside_solutions(SOURCES[page])) == squash(stripped), "the tool and this test disagree on what a solution is"


def test_the_source_folder_is_what_students_install_and_run(tmp_path):
    """The README hands out OUT/source: `pip install -e .` there needs pyproject.toml and its README, and the
    pages must be the stripped ones."""
    import tomllib

    work = tmp_path / "source"
    counts, _ = student_edition.prepare(ROOT, work)
    project = tomllib.loads((work / "pyproject.toml").read_text())["project"]
    assert (work / project["readme"]).is_file() and (work / "ropebook" / "__init__.py").is_file()
    readme = (work / "README.md").read_text()
    assert "pip install -e ." in readme and "make " not in readme.split("## Exercises")[0]  # no Makefile is handed out
    assert not (work / "Makefile").exists() and not (work / "tests").exists()
    assert (work / "requirements.txt").is_file() and (work / "requirements-lab.txt").is_file()
    assert (work / "book" / "data").is_dir() and counts  # the data the pages read, and solutions were removed
    for page in counts:
        assert "{solution-start}" not in (work / page).read_text(), page


def test_sources_give_enough_solution_text():
    """The sentinel: without enough probes the grep below would pass vacuously."""
    assert OWN_CHAPTERS, f"{TOC_PATH} lists neither Part II chapter: nothing to test"
    found = collect()
    for page in OWN_CHAPTERS:
        assert len(found["probes"].get(page, [])) >= 10, f"{page}: only {found['probes'].get(page)} solution probes"
    for page, probes in found["probes"].items():
        assert probes, f"{page} has solution blocks but no distinctive line in them"
    assert sum(map(len, found["probes"].values())) >= 10 * len(OWN_CHAPTERS)


# --- the built student edition ------------------------------------------------------------


@pytest.fixture(scope="module")
def student_site() -> Path:
    existing = os.environ.get("ROPEBOOK_STUDENT_SITE")
    if existing:
        return Path(existing)
    out = ROOT / "_build" / "test-student"
    env = {**os.environ, "ROPEBOOK_EXECUTE": os.environ.get("ROPEBOOK_EXECUTE", "force")}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "student_edition.py"), "build", "--out", str(out),
                           "--toc", str(TOC_PATH)], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"student edition build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}", pytrace=False)
    return out / "html"


def site_texts(site: Path) -> dict[str, str]:
    """Every text file of the site as a reader could search it (HTML without tags, notebooks as sources)."""
    texts = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".ico", ".woff", ".woff2", ".ttf", ".eot"}:
            continue
        raw = path.read_text(encoding="utf-8", errors="ignore")
        if path.suffix == ".html":
            raw = html.unescape(re.sub(r"<[^>]+>", " ", raw))
        elif path.suffix == ".ipynb":
            raw = "\n".join("".join(c["source"]) for c in json.loads(raw)["cells"])
        texts[str(path.relative_to(site))] = "".join(raw.split())
    return texts


def bare(text: str) -> str:
    """Text without any whitespace: markup turned into spaces (or removed) cannot hide a match."""
    return "".join(text.split())


@pytest.mark.book
@pytest.mark.xdist_group("student-edition")  # one worker, one build (make test runs -n 2 --dist loadgroup)
def test_no_solution_text_survives_anywhere(student_site: Path):
    found = collect()
    texts = site_texts(student_site)
    assert len(texts) > 20, f"the student site has only {len(texts)} text files"
    leaks = [(name, probe) for page, probes in found["probes"].items() for probe in probes
             for name, text in texts.items() if bare(probe) in text]
    assert not leaks, f"{len(leaks)} solution lines survived, e.g. {leaks[:5]}"
    markup = [name for name in texts if 'class="solution' in (student_site / name).read_text(errors="ignore")]
    assert not markup, f"solution admonitions in {markup}"


@pytest.mark.book
@pytest.mark.xdist_group("student-edition")  # one worker, one build (make test runs -n 2 --dist loadgroup)
def test_exercises_and_stubs_remain(student_site: Path):
    """Positive controls: the same matcher finds exercise text in the HTML and stubs in the notebooks."""
    found = collect()
    texts = site_texts(student_site)
    checked = 0
    for page, fragments in found["exercise_fragments"].items():
        page_html = texts.get(f"{page}.html", "")
        missing = [f for f in fragments if bare(f) not in page_html]
        assert not missing, f"{page}.html lost exercise text: {missing[:3]}"
        notebook = texts.get(f"_sources/{page}.ipynb", "")
        lost = [s for s in found["stubs"][page] if bare(s) not in notebook]
        assert not lost, f"{page}.ipynb lost its stubs: {lost}"
        checked += len(fragments) + len(found["stubs"][page])
    for page in OWN_CHAPTERS:
        assert found["stubs"][page], f"{page}: no stub found in the sources"
    assert checked >= 20, f"only {checked} positive controls"


@pytest.mark.book
@pytest.mark.xdist_group("student-edition")  # one worker, one build (make test runs -n 2 --dist loadgroup)
def test_search_index_has_no_solution_only_words(student_site: Path):
    found = collect()
    raw = (student_site / "searchindex.js").read_text()
    index = json.loads(raw[raw.index("(") + 1 : raw.rindex(")")])
    terms = set(index["terms"]) | set(index["titleterms"])
    # Words the site may show outside solutions: the pages, the bibliography, the configuration,
    # and the package (pages literalinclude its code, and cell outputs quote it).
    package = "\n".join(p.read_text() for p in sorted((ROOT / "ropebook").rglob("*.py")))
    everywhere_else = found["outside"] + (ROOT / "book" / "references.bib").read_text() + (ROOT / "_config.yml").read_text() + package
    solution_words = {w.lower() for page in SOURCES for b in solution_blocks(SOURCES[page]) for w in re.findall(r"[A-Za-z_]\w+", b)}
    only_in_solutions = index_stems(solution_words) - index_stems(re.findall(r"[A-Za-z_]\w+", everywhere_else.lower()))
    assert len(only_in_solutions) >= 5, f"too few solution-only words to test the index: {sorted(only_in_solutions)}"
    leaked = sorted(only_in_solutions & terms)
    assert not leaked, f"the search index holds words used only in solutions: {leaked}"
    exercise_words = {w.lower() for fs in found["exercise_fragments"].values() for f in fs for w in re.findall(r"[A-Za-z_]\w+", f)}
    control = index_stems(exercise_words)
    assert control and control <= terms, f"exercise words missing from the index: {sorted(control - terms)[:10]}"
