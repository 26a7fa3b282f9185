"""Write a weightless model folder vLLM can serve with ``load_format="dummy"``: a real architecture's
``config.json`` (Qwen2.5-7B-Instruct or Qwen2.5-1.5B-Instruct shape), a locally built tokenizer, the ChatML
chat template and a ``generation_config.json``.

Why the tokenizer covers the model's whole vocabulary: random weights sample any id of the output layer, and
the output layer (152064 x 3584 for the 7B shape) is part of every decode step's cost, so it must keep its
real size. Rather than restricting sampling with ``allowed_token_ids`` (which the pipeline would have to pass
on every request), the tokenizer itself has exactly ``vocab_size`` entries: a byte-level BPE trained on a
local text (so prompts tokenize at a realistic rate, about 4 characters a token on English), padded with
concatenations of its own tokens up to the model's vocabulary. Every id then decodes to text, and the
regex-guided skeleton's grammar is compiled against a vocabulary as large as Qwen's real one (151k entries),
so the structured-output cost is realistic too. The ChatML special tokens sit at Qwen's ids.

Usage: ``python make_model_dir.py OUT_DIR --shape 7b|1.5b [--corpus DIR_OR_FILE ...] [--extra-corpus DIR_OR_FILE ...]``
(without ``--corpus`` it trains on the Python documentation topics that ship with the interpreter;
``--extra-corpus`` adds texts to those). Trained on the documentation topics alone, the BPE splits everyday English
(the real answers of ``tests/data/real_answers.jsonl``) into far more tokens a word than real chat models'
tokenizers do; adding everyday English questions (the LIMA and WizardLM question sets) and prose (the FastAPI
documentation) brings it close (``real_shapes.py`` measures it on the GPU machine and records it as
``tokens_per_word`` in ``benchmarks/results/gpu_real_shapes.json``). Never train it on the replayed answers themselves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path

SHAPES: dict[str, dict] = {
    # Qwen/Qwen2.5-7B-Instruct config.json (architecture fields)
    "7b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": 3584,
        "initializer_range": 0.02,
        "intermediate_size": 18944,
        "max_position_embeddings": 32768,
        "max_window_layers": 28,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 152064,
    },
    # Qwen/Qwen2.5-1.5B-Instruct config.json (architecture fields)
    "1.5b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": 1536,
        "initializer_range": 0.02,
        "intermediate_size": 8960,
        "max_position_embeddings": 32768,
        "max_window_layers": 21,
        "num_attention_heads": 12,
        "num_hidden_layers": 28,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 151936,
    },
}

# ChatML, as Qwen2.5 and tests/tiny_model.py write it (transformers handles continue_final_message).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2's ids for the ChatML tokens.
SPECIAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
TRAINED_VOCAB = 32000


def _stdlib_text() -> Iterator[str]:
    """Python's own documentation topics, or (where a distribution strips them) the standard library's source."""
    try:
        import pydoc_data.topics as topics

        yield from topics.topics.values()
    except ImportError:
        import os

        yield from _corpus_text([os.path.dirname(os.__file__)])


def _corpus_text(paths: list[str]) -> Iterator[str]:
    for p in paths:
        root = Path(p)
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
        for f in files:
            try:
                yield f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue


def build_tokenizer(
    vocab_size: int, corpus: list[str] | None = None, seed: int = 0, extra: list[str] | None = None
):  # -> PreTrainedTokenizerFast
    """Byte-level BPE with exactly ``vocab_size`` ids, ChatML special tokens at Qwen's ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    texts = itertools.chain(_corpus_text(corpus) if corpus else _stdlib_text(), _corpus_text(extra or []))
    lines = (line for text in texts for line in text.split("\n"))
    base.train_from_iterator(lines, trainer=trainer)
    trained = json.loads(base.to_str())["model"]
    vocab: dict[str, int] = dict(sorted(trained["vocab"].items(), key=lambda kv: kv[1]))
    merges: list[list[str]] = [m.split(" ") if isinstance(m, str) else list(m) for m in trained["merges"]]
    tokens = list(vocab)  # by id
    # Numbered-list tokens ("1. ", "\n2. " ...): a skeleton line then starts with one token.
    # ("Ċ" is the byte-level form of a newline, "Ġ" of a space.)
    extra_merges: list[tuple[str, str]] = [("1", "0")] + [(str(k), ".") for k in range(1, 11)]
    extra_merges += [(f"{k}.", "Ġ") for k in range(1, 11)] + [("Ċ", f"{k}.Ġ") for k in range(1, 11)]
    # Then concatenations of two trained tokens (each a valid merge of existing tokens) that look like real BPE
    # tokens: a space or newline only at the start (a vocabulary full of tokens with inner spaces makes
    # regex-guided decoding far costlier than with any real tokenizer). The special ids stay free.
    rng = random.Random(seed)
    heads = [t for t in tokens if len(t) > 1 and "Ċ" not in t[1:] and "Ġ" not in t[1:]]
    tails = [t for t in heads if not t.startswith(("Ġ", "Ċ"))]
    next_id = len(vocab)
    reserved = set(SPECIAL_IDS.values())

    def add(a: str, b: str) -> None:
        nonlocal next_id
        while next_id in reserved:
            next_id += 1
        vocab[a + b] = next_id
        merges.append([a, b])
        next_id += 1

    for a, b in extra_merges:
        if a + b not in vocab:
            add(a, b)
    while next_id < vocab_size:
        a, b = rng.choice(heads), rng.choice(tails)
        if a + b in vocab or len(a + b) > 16:
            continue
        add(a, b)
        while next_id in reserved:
            next_id += 1
    for name, i in SPECIAL_IDS.items():
        vocab[name] = i
    assert sorted(vocab.values()) == list(range(vocab_size)), "ids must be exactly 0..vocab_size-1"

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(m[0], m[1]) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_IDS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    for t, i in SPECIAL_IDS.items():
        assert fast.convert_tokens_to_ids(t) == i, (t, fast.convert_tokens_to_ids(t), i)
    assert len(fast) == vocab_size, (len(fast), vocab_size)
    return fast


def write_model_dir(
    out: str | Path, shape: str = "7b", corpus: list[str] | None = None, extra: list[str] | None = None
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SHAPES[shape]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643})
    )
    build_tokenizer(cfg["vocab_size"], corpus, extra=extra).save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--corpus", nargs="*", default=None, help="text files or folders to train the BPE on")
    ap.add_argument("--extra-corpus", nargs="*", default=None, help="text files or folders added to the training text")
    args = ap.parse_args()
    print(write_model_dir(args.out, args.shape, args.corpus, args.extra_corpus))


if __name__ == "__main__":
    main()
