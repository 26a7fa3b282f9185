"""Build a tiny random-weight chat model that vLLM can serve on a CPU in seconds.

Nothing can be downloaded here, so the tests make their own model: a 2-layer Llama (head_dim 64, which the
CPU attention backend needs), a byte-level BPE tokenizer trained on a few paragraphs with ``tokenizers``,
and a ChatML chat template whose markers (``<|im_start|>``, ``<|im_end|>``) are special tokens. Its text is
gibberish, but a regex-guided skeleton still comes out as a well-formed numbered list, so every stage of
Skeleton-of-Thought runs for real.

Usage: ``python tests/tiny_model.py OUT_DIR`` or ``build_tiny_model(path)``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TRAINING_TEXT = """
Skeleton of thought answers a question in two stages. First the model writes a short skeleton: a numbered
list of points, each a few words. Then every point is expanded in parallel, and the answer is assembled in
order. Retrieval finds passages in the user's documents; the passages are placed before the question so
that every request shares one prefix. The quick brown fox jumps over the lazy dog. Tips to sleep better:
keep a regular schedule, avoid caffeine late, keep the bedroom dark and cool, and put screens away.
How do I install the server? Run the install command, then start it and open the page in a browser.
1. First point 2. Second point 3. Third point 4. Fourth 5. Fifth 6. Sixth 7. Seventh 8. Eighth 9. Ninth 10.
The FastAPI framework declares path operations with decorators, validates requests with pydantic models,
and documents the API with OpenAPI. Dependencies are functions that the framework calls for you.
"""


def build_tokenizer(vocab_size: int = 1024, extra_text: str = ""):  # -> PreTrainedTokenizerFast
    """Train a byte-level BPE tokenizer with ChatML special tokens and the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = (_TRAINING_TEXT + extra_text) * 4
    tok.train_from_iterator(text.split("\n"), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        # The role marker is a declared special token too, as in real chat models: prompt-injection tests
        # need text holding "<|im_start|>" to be able to become this id (and check that it never does).
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, *, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write config, random weights, tokenizer and chat template to ``out_dir``; returns it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",  # type: ignore[call-arg]  # transformers 5 calls it dtype; older ones know only this
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    gen = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(gen))
    return out


@functools.cache
def plain_token_ids(model_dir: Path) -> list[int]:
    """Every id of the model's tokenizer but the special ones: sampled only from these, the random model never
    ends a request early on an EOS nor writes a role marker, so a request's length is what it asks for."""
    from transformers import AutoTokenizer

    from sotrag.app.engines.chat_ids import special_token_ids

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    special = special_token_ids(tok)
    return [i for i in range(len(tok)) if i not in special]


if __name__ == "__main__":
    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
