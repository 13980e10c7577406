"""The texts of a decoder-only LLM build (issue 18): calibration and evaluation texts (`.txt`, one
per line, or `.jsonl`), and `.jsonl` tasks (`prompt` + `answer`) for an exact-match task metric."""

from __future__ import annotations

import json
from pathlib import Path

from edgeopt.errors import BadInput


def _rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict):
            raise BadInput(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows


def read_texts(path: Path | None) -> list[str]:
    """A .txt file (one text per line, blank lines dropped) or .jsonl rows with "text", or with
    "prompt" (and "answer": the text is the prompt followed by its answer)."""
    if path is None:
        return []
    if not Path(path).is_file():
        raise BadInput(f"{path}: text file not found")
    if str(path).endswith(".jsonl"):
        return [str(r.get("text") or (str(r.get("prompt", "")) + str(r.get("answer", "")))) for r in _rows(Path(path))]
    return [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]


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
