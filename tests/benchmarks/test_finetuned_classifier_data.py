"""The fortune-classifier benchmark's data preparation (benchmarks/finetuned_classifier.py): the
`%`-separated format and a deterministic, disjoint, balanced split. A fixture string stands in
for the fortunes package, so nothing here needs it installed (or torch)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetuned_classifier.py"
spec = importlib.util.spec_from_file_location("finetuned_classifier", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

FILE = ("A computer lets you make more mistakes\nfaster than any invention.\n%\n"
        "\t_\bU_\bn_\bd_\be_\br_\bl_\bi_\bn_\be_\bd  text.\n%\n%\n"
        "Last quote, no final separator")


def test_parse_fortunes_splits_on_percent_lines_and_cleans_overstrike():
    assert bench.parse_fortunes(FILE) == ["A computer lets you make more mistakes faster than any invention.",
                                          "Underlined text.", "Last quote, no final separator"]
    assert bench.parse_fortunes("100% sure\n%\n") == ["100% sure"]  # '%' inside a line is text


def corpus(n: int = 30) -> dict[str, list[str]]:
    data = {label: [f"{label} quote {i}" for i in range(n)] for label in ("a", "b", "c")}
    data["a"] += ["shared", "a quote 0"]  # in two classes (dropped) and a repeat (kept once)
    data["b"].append("shared")
    return data


def test_split_is_deterministic_disjoint_and_balanced():
    parts = bench.split(corpus(), eval_per_class=5, calib_per_class=3, cap=20, seed=7)
    shuffled = {label: list(reversed(texts)) for label, texts in corpus().items()}
    assert bench.split(shuffled, 5, 3, 20, seed=7) == parts  # input order does not matter
    assert bench.split(corpus(), 5, 3, 20, seed=8) != parts
    texts = {name: [t for t, _ in rows] for name, rows in parts.items()}
    assert all(len(set(v)) == len(v) for v in texts.values())
    assert not set(texts["train"]) & set(texts["calib"]) and not set(texts["train"]) & set(texts["eval"])
    assert not set(texts["calib"]) & set(texts["eval"])
    assert "shared" not in {t for rows in texts.values() for t in rows}
    for name, per_class in (("eval", 5), ("calib", 3), ("train", 12)):
        assert sorted(label for _, label in parts[name]) == sorted(["a", "b", "c"] * per_class)
    assert all(t.startswith(label) for rows in parts.values() for t, label in rows)


def test_split_refuses_a_class_too_small():
    with pytest.raises(ValueError, match="c: 4 texts"):
        bench.split({"a": [f"a{i}" for i in range(20)], "c": ["c1", "c2", "c3", "c4"]}, 3, 1, 20)


# ---- the new domains (issue 20 item 3): benchmarks/data/text_domains.py, on fixture text ----

from text_domains import DOMAINS, parse_debian, parse_whatis  # noqa: E402  (the script put benchmarks/data on sys.path)

CONTROL = """Package: 0ad
Section: games
Description: Real-time strategy game of ancient warfare
 A long description line that is not the synopsis.
Homepage: https://play0ad.com/

Package: tor-geoipdb
Section: contrib/net
Description: GeoIP   database for Tor

Package: libfoo1
Section: libs
Description: a library (not a chosen section)

Package: nodesc
Section: games
"""

WHATIS = """ls (1)               - list directory contents
socketpair (2)       - create a pair of connected sockets
SSL_new (3ssl)       - a sub-section, not used
gcloud_x (1)         - (unknown subject)
printf (3)           - formatted output conversion
not a whatis line
"""


def test_parse_debian_takes_the_synopsis_by_section_without_archive_prefix():
    found = parse_debian(CONTROL, ("games", "net"))
    assert found == {"games": ["Real-time strategy game of ancient warfare"], "net": ["GeoIP database for Tor"]}


def test_parse_whatis_keeps_name_and_description_of_the_chosen_sections_only():
    found = parse_whatis(WHATIS, ("1", "2", "3"))
    assert found == {"1": ["ls - list directory contents"], "2": ["socketpair - create a pair of connected sockets"],
                     "3": ["printf - formatted output conversion"]}


def test_every_domain_has_six_labels_and_a_size_entry():
    assert set(DOMAINS) == set(bench.SIZES) == {"fortunes", "debian", "man"}
    assert all(len(labels) == 6 for _, labels in DOMAINS.values())
