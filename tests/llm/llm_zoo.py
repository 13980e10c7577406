"""Tiny random-weight causal LMs made at test time (Llama and Qwen2 configs), with a small BPE
tokenizer trained on Debian's license texts, so fast tests need no download and no real model."""

from __future__ import annotations

from pathlib import Path

import pytest

LICENSES = sorted(Path("/usr/share/common-licenses").glob("*"))


def debian_text(limit: int = 40000) -> str:
    """Real English text from the system (Debian's common licenses), not made-up strings."""
    text = "\n".join(p.read_text(errors="replace") for p in LICENSES if p.is_file())
    return text[:limit]


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(debian_text().splitlines(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    return fast


def make_model(folder: Path, family: str = "llama") -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    if family == "llama":
        config = transformers.LlamaConfig(**common)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(**common)
        model = transformers.Qwen2ForCausalLM(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    _tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def texts(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("texts")
    lines = [line for line in debian_text().splitlines() if line.strip()]
    calib, evaluation = folder / "calib.txt", folder / "eval.txt"
    calib.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    evaluation.write_text("\n".join(lines[len(lines) // 2:]) + "\n")
    return calib, evaluation


def lora_adapter(tiny_llama: Path, root: Path):
    """(root/adapter, the PEFT model): a LoRA adapter (random, non-zero) on a copy of the tiny Llama
    at root/base, its base_model_name_or_path the local folder beside it, as a user's fine-tune is."""
    import json
    import shutil

    import peft
    import transformers

    shutil.copytree(tiny_llama, root / "base")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(root / "base"))
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(str(root / "adapter"))
    config = root / "adapter" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": "../base"}))
    return root / "adapter", lora
