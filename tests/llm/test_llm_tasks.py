"""`.jsonl` prompt/answer evaluation of an LLM build (issue 18, item 4): the exact-match task metric
(metrics/language.py), `--metric`, the readers' refusals, and the task gate."""

from __future__ import annotations

import json

import pytest
from llm_zoo import texts, tiny_llama  # noqa: F401 - fixtures

from edgeopt.data.llm_texts import read_tasks, read_texts
from edgeopt.errors import BadInput
from edgeopt.metrics import language


def test_exact_match_compares_the_first_line_normalized():
    assert language.normalize_answer("  Paris.\nThe capital of France is Paris") == "paris"
    assert language.normalize_answer('"GPL-2"  ') == "gpl-2"
    assert language.exact_match(["Paris\n...", "Lyon", "  berlin!"], ["paris", "Paris", "Berlin"]) == pytest.approx(2 / 3)
    assert language.exact_match(["Paris is nice"], ["Paris"]) == 0.0  # exact, not a prefix


def test_task_scores_with_and_without_a_user_metric():
    scores = language.task_scores(["4", "9"], ["4", "8"], ["4", "9"], ["2+2=", "3*3="])
    assert (scores["metric"], scores["fp32"], scores["value"], scores["drop"]) == ("exact_match", 1.0, 0.5, 0.5)
    def length(predictions, answers, prompts):
        return sum(map(len, predictions)) / len(prompts)
    custom = language.task_scores(["aa", "b"], ["a", "b"], ["x", "y"], ["p", "q"], length, "m.py:length")
    assert (custom["metric"], custom["fp32"], custom["value"]) == ("m.py:length", 1.5, 1.0)


def test_readers_refuse_broken_and_mixed_jsonl(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "answer": "b"}\nnot json\n')
    with pytest.raises(BadInput, match=r"bad.jsonl:2: not valid JSON"):
        read_tasks(bad)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"prompt": "a", "answer": "b"}\n{"text": "plain"}\n')
    with pytest.raises(BadInput, match="1 of 2 rows lack"):
        read_tasks(mixed)
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "Q: 2+2?\\nA:", "answer": " 4"}\n')
    assert read_tasks(good) == [{"prompt": "Q: 2+2?\nA:", "answer": " 4"}]
    assert read_texts(good) == ["Q: 2+2?\nA: 4"]  # perplexity is judged on prompt + answer


def test_jsonl_tasks_through_the_build_with_a_metric(tiny_llama, texts, tmp_path):
    import torch
    import transformers

    from conftest import build_json

    calib, evaluation = texts
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_llama))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    lines = [line for line in evaluation.read_text().splitlines() if len(line) > 40][:6]
    rows = []
    for index, line in enumerate(lines):
        prompt = line[:40]
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            greedy = model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1]:]
        answer = tokenizer.decode(greedy) if index % 2 == 0 else "zzz never generated"
        rows.append({"prompt": prompt, "answer": answer})
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metric = tmp_path / "metric.py"
    metric.write_text("def starts(predictions, answers, prompts):\n"
                      "    return sum(p.startswith(a) for p, a in zip(predictions, answers)) / len(answers)\n")
    code, document, stderr = build_json(str(tiny_llama), "--target", "cpu", "--calib", str(calib), "--eval", str(tasks),
                                        "--metric", f"{metric}:starts", "--out", str(tmp_path / "b"))
    assert document is not None, stderr
    task = document["metrics"]["llm"]["task"]
    assert task["metric"].endswith(":starts") and task["tasks"] == 6
    assert task["fp32"] == pytest.approx(0.5)  # FP32's own greedy answers for half the prompts, nonsense for the rest
    gate = next(g for g in document["gates"] if g["name"] == "max_task_metric_drop")
    assert gate["value"] == pytest.approx(task["drop"]) and gate["passed"] == (task["drop"] <= gate["threshold"])


def test_metric_without_tasks_is_refused_in_one_line(tiny_llama, texts, tmp_path):
    from helpers.cli_lines import assert_one_line, run

    calib, evaluation = texts
    code, lines = run("build", str(tiny_llama), "--calib", str(calib), "--eval", str(evaluation), "--metric", "m.py:f",
                      "--out", str(tmp_path / "x"))
    assert_one_line(code, lines, 2, "--metric m.py:f", "prompt", "answer")


def test_llm_texts_are_read_within_the_text_bounds(tmp_path):
    """Calibration/eval texts go through safe_io like every text input: a single 2 MB line is refused
    after 1 MB is read, and bytes that are not UTF-8 are one line naming the file."""
    long = tmp_path / "long.txt"
    long.write_bytes(b"a" * (2 << 20))
    with pytest.raises(BadInput, match=r"long.txt: line 1 of the LLM texts is longer than 1024 KB"):
        read_texts(long)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"text": "\xff\xfe"}\n')
    with pytest.raises(BadInput, match=r"binary.jsonl"):
        read_texts(binary)
