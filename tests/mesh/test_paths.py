"""Lock paths: normalisation, and whether two patterns can name the same file."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slm_mesh.mesh.paths import is_glob, matches, normalise, overlaps

# -- normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cwd", "expected"),
    [
        ("src/a.ts", "/repo", "/repo/src/a.ts"),
        ("./src/a.ts", "/repo", "/repo/src/a.ts"),
        ("src/../lib/a.ts", "/repo", "/repo/lib/a.ts"),
        ("../other/a.ts", "/repo/sub", "/repo/other/a.ts"),
        ("/abs/a.ts", "/repo", "/abs/a.ts"),
        ("/abs/a.ts", None, "/abs/a.ts"),
        ("//repo//src///a.ts", None, "/repo/src/a.ts"),
        ("///repo/src/", None, "/repo/src"),
        ("/repo/./src/./a.ts", None, "/repo/src/a.ts"),
        ("/../../a.ts", None, "/a.ts"),
        ("src/*.ts", "/repo", "/repo/src/*.ts"),
        ("src/**", "/repo//", "/repo/src/**"),
    ],
)
def test_a_path_is_made_absolute_and_normalised(path: str, cwd: str | None, expected: str) -> None:
    assert normalise(path, cwd) == expected


def test_a_relative_and_an_absolute_spelling_of_one_file_normalise_alike() -> None:
    assert normalise("src/../src/a.ts", "/repo") == normalise("/repo/src/a.ts", "/elsewhere")


@pytest.mark.parametrize(
    ("path", "cwd"),
    [("", "/repo"), ("src/a.ts", None), ("src/a.ts", ""), ("src/a.ts", "relative/cwd")],
)
def test_a_path_that_cannot_be_made_absolute_is_refused(path: str, cwd: str | None) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - normalise raises nothing else
        normalise(path, cwd)


def test_only_star_question_mark_and_brackets_make_a_glob() -> None:
    assert is_glob("/r/*.ts")
    assert is_glob("/r/?.ts")
    assert is_glob("/r/[ab].ts")
    assert is_glob("/r/**")
    assert not is_glob("/r/src/a.ts")
    assert not is_glob("/r/{a,b}.ts")


# -- overlap -----------------------------------------------------------------------------

OVERLAPPING = [
    ("/r/a", "/r/a"),
    ("/r/src/*", "/r/src/x.ts"),
    ("/r/src/*.ts", "/r/src/x.ts"),
    ("/r/src/?.ts", "/r/src/x.ts"),
    ("/r/src/[xyz].ts", "/r/src/x.ts"),
    ("/r/**", "/r/src/deep/x.ts"),
    ("/r/**", "/r"),
    ("/r/src/**", "/r/src/a/*.ts"),
    ("/r/src/**", "/r/*/x.ts"),
    ("/r/**/x.ts", "/r/src/a/x.ts"),
    ("/r/**/*.ts", "/r/**/x.*"),
    ("/r/src/*.ts", "/r/src/a*"),
    ("/r/*/x.ts", "/r/src/*"),
    ("/r/a*b", "/r/*c*"),
    ("/r/?.ts", "/r/*s"),
    ("/r/src/*", "/r/src/**"),
    ("/r/**", "/r/src/**"),
]

DISJOINT = [
    ("/r/a", "/r/b"),
    ("/r/src/*.ts", "/r/src/*.py"),
    ("/r/src/*.ts", "/r/src/*.tsx"),
    ("/r/src/x.ts", "/r/src/x.tsx"),
    ("/r/src/*", "/r/src/deep/x.ts"),
    ("/r/src/?.ts", "/r/src/xy.ts"),
    ("/r/src/[ab]", "/r/src/cd"),
    ("/r/src/**", "/r/lib/x.ts"),
    ("/r/**/*.ts", "/r/**/*.py"),
    ("/r/a/*/c", "/r/a/b"),
    ("/r/src", "/r/src/x.ts"),
    ("/r/src/**", "/q/**"),
]


@pytest.mark.parametrize(("a", "b"), OVERLAPPING)
def test_patterns_that_some_path_matches_both_overlap(a: str, b: str) -> None:
    assert overlaps(a, b)
    assert overlaps(b, a)


@pytest.mark.parametrize(("a", "b"), DISJOINT)
def test_patterns_that_no_path_matches_both_do_not_overlap(a: str, b: str) -> None:
    assert not overlaps(a, b)
    assert not overlaps(b, a)


def test_star_stays_within_one_segment_and_double_star_crosses_segments() -> None:
    assert matches("/r/src/*", "/r/src/x.ts")
    assert not matches("/r/src/*", "/r/src/deep/x.ts")
    assert matches("/r/src/**", "/r/src/deep/x.ts")
    assert matches("/r/src/**/x.ts", "/r/src/x.ts")


# -- against a reference matcher --------------------------------------------------------


def _reference_match(pattern: list[str], path: list[str]) -> bool:
    """fnmatch per segment; a ``**`` segment stands for any number of whole segments."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_reference_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return (
        bool(path)
        and fnmatch.fnmatchcase(path[0], pattern[0])
        and _reference_match(pattern[1:], path[1:])
    )


def reference_match(pattern: str, path: str) -> bool:
    return _reference_match(pattern.split("/"), path.split("/"))


_segment = st.text(alphabet="ab.", min_size=1, max_size=4)
_plain_path = st.lists(_segment, min_size=1, max_size=4).map(lambda s: "/r/" + "/".join(s))


@st.composite
def _glob_of(draw: st.DrawFn, path: str, classes: bool) -> str:
    """A pattern that matches ``path``: some characters or segments replaced by wildcards."""
    segments = path.split("/")[2:]
    out: list[str] = []
    i = 0
    while i < len(segments):
        choice = draw(st.sampled_from(["keep", "glob", "star", "dstar"]))
        if choice == "dstar":
            n = draw(st.integers(0, len(segments) - i))
            out.append("**")
            i += n
            continue
        seg = segments[i]
        if choice == "star":
            out.append("*")
        elif choice == "glob":
            chars = []
            for c in seg:
                wild = draw(st.sampled_from(["", "?", "*", "[]"] if classes else ["", "?", "*"]))
                chars.append({"": c, "?": "?", "*": "*" + c, "[]": f"[{c}x]"}[wild])
            out.append("".join(chars))
        else:
            out.append(seg)
        i += 1
    return "/r/" + "/".join(out) if out else "/r/**"


@settings(max_examples=300, deadline=None)
@given(st.data(), _plain_path)
def test_two_patterns_that_match_one_path_always_overlap(data: st.DataObject, path: str) -> None:
    a = data.draw(_glob_of(path, classes=True))
    b = data.draw(_glob_of(path, classes=True))
    assert reference_match(a, path) and reference_match(b, path)
    assert overlaps(a, b)
    assert matches(a, path)


_pattern_segment = st.text(alphabet="ab.*?", min_size=1, max_size=4).filter(lambda s: s != "**")
_pattern = st.lists(st.one_of(_pattern_segment, st.just("**")), min_size=1, max_size=4).map(
    lambda s: "/r/" + "/".join(s)
)


@settings(max_examples=300, deadline=None)
@given(_pattern, _plain_path)
def test_a_pattern_matches_exactly_the_paths_fnmatch_says_it_does(pattern: str, path: str) -> None:
    assert matches(pattern, path) == reference_match(pattern, path)
