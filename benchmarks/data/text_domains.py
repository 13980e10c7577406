"""Labelled text domains for the fine-tuned classifier benchmark (benchmarks/finetuned_classifier.py),
read from what a Debian/Ubuntu machine already holds (nothing downloaded):

- fortunes: the quotes of the `fortunes` package, labelled by the file (editorial category) they are in.
- debian: package short descriptions (`apt-cache dumpavail`, the archive's package lists; or
  /var/lib/dpkg/status, the installed packages only), labelled by archive section (games, net, ...),
  "contrib/" and "non-free/" prefixes dropped.
- man: NAME lines of the manual (`man -k .`, i.e. whatis), "name - description", labelled by
  manual section (1 user commands, 2 system calls, 3 library functions, 5 file formats, 7
  overviews, 8 administration); sub-sections such as 3pm or 1ssl are not used.

Parsers are pure functions of text (tested on fixture strings in
tests/benchmarks/test_finetuned_classifier_data.py); readers run the system's own tools.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_CATEGORIES = ("computers", "politics", "science", "work", "literature", "law")
DEBIAN_SECTIONS = ("games", "graphics", "net", "science", "sound", "text")
MAN_SECTIONS = ("1", "2", "3", "5", "7", "8")


def parse_fortunes(text: str) -> list[str]:
    """Quotes of one fortune file: separated by lines holding only '%'; backspace overstrike
    ('_\\bx', the files' underlining) removed, whitespace collapsed, empty quotes dropped."""
    text = re.sub(r".\x08", "", text)
    quotes = (" ".join(part.split()) for part in re.split(r"^%[ \t]*$", text, flags=re.MULTILINE))
    return [q for q in quotes if q]


def read_fortunes(root: Path = FORTUNES) -> dict[str, list[str]]:
    return {name: parse_fortunes((root / name).read_bytes().decode("utf-8", errors="replace"))
            for name in FORTUNE_CATEGORIES}


def parse_debian(text: str, sections: tuple[str, ...] = DEBIAN_SECTIONS) -> dict[str, list[str]]:
    """{section: [short description]} from Debian control stanzas (blank-line separated; a
    continuation line starts with a space and is not the short description)."""
    found: dict[str, list[str]] = {s: [] for s in sections}
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+):[ \t]*(.*)$", stanza, flags=re.MULTILINE))
        section = fields.get("Section", "").rsplit("/", 1)[-1]
        description = " ".join(fields.get("Description", "").split())
        if section in found and description:
            found[section].append(description)
    return found


def read_debian(sections: tuple[str, ...] = DEBIAN_SECTIONS) -> dict[str, list[str]]:
    """The archive's package lists (`apt-cache dumpavail`: every package apt knows of here)."""
    text = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, check=True, text=True,
                          errors="replace").stdout
    return parse_debian(text, sections)


MAN_LINE = re.compile(r"^(\S.*?) \((\w+)\)\s+- (.+)$")


def parse_whatis(text: str, sections: tuple[str, ...] = MAN_SECTIONS) -> dict[str, list[str]]:
    """{section: ["name - description"]} from `man -k` / `whatis` lines ("ls (1) - list ...");
    lines of other (sub-)sections, lines that do not parse, and pages without a NAME line
    (mandb's "(unknown subject)": 4000 generated gcloud pages here) are skipped."""
    found: dict[str, list[str]] = {s: [] for s in sections}
    for line in text.splitlines():
        match = MAN_LINE.match(line.strip())
        if match and match.group(2) in found and not match.group(3).startswith("(unknown subject)"):
            found[match.group(2)].append(f"{' '.join(match.group(1).split())} - {' '.join(match.group(3).split())}")
    return found


def read_man(sections: tuple[str, ...] = MAN_SECTIONS) -> dict[str, list[str]]:
    text = subprocess.run(["man", "-k", "."], capture_output=True, check=False, text=True, errors="replace").stdout
    return parse_whatis(text, sections)


DOMAINS = {  # name -> (reader, labels)
    "fortunes": (read_fortunes, FORTUNE_CATEGORIES),
    "debian": (read_debian, DEBIAN_SECTIONS),
    "man": (read_man, MAN_SECTIONS),
}
