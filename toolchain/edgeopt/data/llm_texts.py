"""The texts of a decoder-only LLM build (issue 18): calibration and evaluation texts (`.txt`, one
per line, or `.jsonl`), and `.jsonl` tasks (`prompt` + `answer`) for an exact-match task metric."""

from __future__ import annotations

from pathlib import Path

from edgeopt.data.text import jsonl_objects, text_lines
from edgeopt.errors import BadInput


def _rows(path: Path) -> list[dict]:
    return [row for _, row in jsonl_objects(path, "the LLM texts")]


def read_texts(path: Path | None) -> list[str]:
    """A .txt file (one text per line, blank lines dropped) or .jsonl rows with "text", or with
    "prompt" (and "answer": the text is the prompt followed by its answer)."""
    if path is None:
        return []
    if not Path(path).is_file():
        raise BadInput(f"{path}: text file not found")
    if str(path).endswith(".jsonl"):
        return [str(r.get("text") or (str(r.get("prompt", "")) + str(r.get("answer", "")))) for r in _rows(Path(path))]
    return [line for line in text_lines(Path(path), "the LLM texts") if line.strip()]


def read_tasks(path: Path | None) -> list[dict]:
    """The .jsonl rows that have both "prompt" and "answer" (none for a .txt file). A file where
    some rows have them and others not is refused: a task set is all tasks."""
    if path is None or not str(path).endswith(".jsonl"):
        return []
    rows = _rows(Path(path))
    tasks = [{"prompt": str(r["prompt"]), "answer": str(r["answer"])} for r in rows if "prompt" in r and "answer" in r]
    if tasks and len(tasks) != len(rows):
        raise BadInput(f"{path}: {len(rows) - len(tasks)} of {len(rows)} rows lack \"prompt\" or \"answer\"; "
                       "give every row both (a task set) or none (texts)")
    return tasks
