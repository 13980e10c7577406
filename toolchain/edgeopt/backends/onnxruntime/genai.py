"""The CPU deployable of a causal LM: a folder onnxruntime-genai opens as it is (`og.Model(folder)`),
and the two ways edgeopt runs it: an ONNX Runtime session with an explicit KV cache (scoring for
perplexity and KL, at batch 1, from an empty cache) and onnxruntime-genai itself (greedy
generation and timing, as deployed).

genai_config.json is written here, from the model's config and the ONNX graph's own names; the
fields follow onnxruntime-genai's builder (src/python/py/models/builders/base.py, the
`genai_config` writer) and its reader (src/config.cpp). optimum's export concatenates past and
present (no shared buffer), so `past_present_share_buffer` is false.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from edgeopt.errors import MissingEnvironment

CONFIG_NAME = "genai_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def _ort():
    import onnxruntime  # heavy: native library

    return onnxruntime


def _og():
    try:
        import onnxruntime_genai  # heavy: native library
    except ImportError:
        raise MissingEnvironment("running a text-generation deployable needs onnxruntime-genai: pip install 'edgeopt[llm]'") from None
    return onnxruntime_genai


def genai_config(facts: dict, onnx_name: str, threads: int | None = None) -> dict:
    """The genai_config.json document for an optimum KV-cache export of a model with `facts`
    (models.causal_lm.model_facts)."""
    session_options = {"log_id": "onnxruntime-genai", "provider_options": []}
    if threads:
        session_options["intra_op_num_threads"] = threads
    context = facts["context_length"]
    model_type = {"qwen3": "qwen3", "gpt2": "gpt2"}.get(facts["model_type"], facts["model_type"])
    return {
        "model": {
            "bos_token_id": facts["bos_token_id"] if facts["bos_token_id"] is not None else 1,
            "context_length": context,
            "decoder": {
                "session_options": session_options,
                "filename": onnx_name,
                "head_size": facts["head_size"],
                "hidden_size": facts["hidden_size"],
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                           "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": facts["num_heads"],
                "num_hidden_layers": facts["num_layers"],
                "num_key_value_heads": facts["num_kv_heads"],
            },
            "eos_token_id": facts["eos_token_id"],
            "pad_token_id": facts["pad_token_id"],
            "type": model_type,
            "vocab_size": facts["vocab_size"],
        },
        "search": {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                   "max_length": context, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0},
    }


def write_folder(onnx_path: Path, tokenizer_dir: Path, facts: dict, out: Path, threads: int | None = None) -> Path:
    """model.onnx (+ its external data) + genai_config.json + tokenizer files in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    data = onnx_path.with_name(onnx_path.name + "_data")
    for file in (onnx_path, data):
        if file.is_file():
            shutil.copyfile(file, out / file.name)
    gpt2_input = _has_position_ids(onnx_path)
    config = genai_config(facts, onnx_path.name, threads)
    if not gpt2_input:
        del config["model"]["decoder"]["inputs"]["position_ids"]
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, out / name)
    return out


def _has_position_ids(onnx_path: Path) -> bool:
    import onnx  # heavy

    return any(i.name == "position_ids" for i in onnx.load(str(onnx_path), load_external_data=False).graph.input)


class CausalSession:
    """One ONNX Runtime session over a KV-cache export, batch 1."""

    def __init__(self, onnx_path: Path, threads: int | None = None):
        ort = _ort()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.past = sorted((n for n in self.inputs if n.startswith("past_key_values.")),
                           key=lambda n: (int(n.split(".")[1]), n))
        first = self.inputs[self.past[0]].shape if self.past else None
        self.kv_heads, self.head_size = (first[1], first[3]) if first else (0, 0)
        if not isinstance(self.head_size, int):  # the genai builder's graph names it kv_cache_dim
            config = Path(onnx_path).with_name(CONFIG_NAME)
            decoder = json.loads(config.read_text())["model"]["decoder"] if config.is_file() else {}
            self.head_size = int(decoder.get("head_size", 0))
        self.dtype = np.float16 if self.past and "float16" in self.inputs[self.past[0]].type else np.float32

    def empty_cache(self) -> dict:
        return {n: np.zeros((1, self.kv_heads, 0, self.head_size), self.dtype) for n in self.past}

    def step(self, ids: list[int], cache: dict, past_len: int) -> tuple[np.ndarray, dict]:
        """Run `ids` after `past_len` cached tokens; returns logits (len(ids), vocab) and the new cache."""
        feed = {"input_ids": np.array([ids], np.int64),
                "attention_mask": np.ones((1, past_len + len(ids)), np.int64), **cache}
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.arange(past_len, past_len + len(ids), dtype=np.int64)[None]
        outputs = self.session.run(None, feed)
        names = [o.name for o in self.session.get_outputs()]
        present = dict(zip(names, outputs))
        cache = {n: present[n.replace("past_key_values.", "present.")] for n in self.past}
        return present["logits"][0].astype(np.float32), cache

    def score(self, ids: list[int]) -> np.ndarray:
        """Logits for every position of `ids`, from an empty cache."""
        return self.step(ids, self.empty_cache(), 0)[0]


def greedy(session: CausalSession, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy continuation through the KV cache (prefill, then one token per step)."""
    logits, cache = session.step(prompt, session.empty_cache(), 0)
    out = [int(logits[-1].argmax())]
    while len(out) < new_tokens:
        logits, cache = session.step([out[-1]], cache, len(prompt) + len(out) - 1)
        out.append(int(logits[-1].argmax()))
    return out


class GenaiRunner:
    """The deployable as onnxruntime-genai runs it: greedy tokens and per-token timing."""

    def __init__(self, folder: Path, clock=time.perf_counter):
        self.og = _og()
        self.model = self.og.Model(str(folder))
        self.clock = clock

    def generate(self, prompt: list[int], new_tokens: int) -> tuple[list[int], list[float]]:
        """Greedy tokens (exactly `new_tokens`, EOS ignored) and each token's seconds; the first
        includes the prefill (time to first token)."""
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=len(prompt) + new_tokens, min_length=len(prompt) + new_tokens)
        generator = self.og.Generator(self.model, params)
        tokens, times = [], []
        start = self.clock()
        generator.append_tokens(np.array(prompt, dtype=np.int32))
        while len(tokens) < new_tokens and not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            now = self.clock()
            times.append(now - start)
            start = now
        return tokens, times
