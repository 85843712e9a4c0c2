#!/usr/bin/env python3
"""Export a Hugging Face model to ONNX in the form `cachemirc compile` reads, with calibration data.

Two kinds of model:

  decoder  a causal LM (Llama, GPT-2, Qwen2, ... any `AutoModelForCausalLM` with a KV cache) as
           one "decoder with past" graph, the optimum convention for text generation with a
           cache: inputs `input_ids` [batch, sequence], `attention_mask` [batch, past + sequence],
           `position_ids` [batch, sequence], `past_key_values.{i}.key|value`
           [batch, kv_heads, past, head_dim]; outputs `logits` [batch, sequence, vocab] and
           `present.{i}.key|value` [batch, kv_heads, past + sequence, head_dim]. Batch, sequence
           and past are dynamic; `cachemirc compile --generation --max-context N` binds them
           (batch 1, one token a step, a cache of N - 1 positions).
  encoder  a sentence encoder (BERT-like `AutoModel` with mean pooling and L2 normalisation, as
           sentence-transformers computes embeddings): inputs `input_ids`, `attention_mask` (and
           `token_type_ids` where the model takes them) [batch, sequence]; outputs
           `last_hidden_state` [batch, sequence, hidden] and `sentence_embedding` [batch, hidden].

Written to OUT/: `model.onnx` (weights inside the file, float32), `tokenizer/` (the model's
tokenizer; `tokenizer.json` is what `cachemir generate --tokenizer` reads), `calib.json` with one
`calib.<input>.npy` per input (samples stacked on a new leading axis, each a complete batch-1
input; the decoder's outputs too) for `cachemirc compile --calibration`, and `export.json` (the
arguments and library versions).

Decoder calibration samples are decode steps over windows of the calibration text: sample i has
k real past tokens (k = --past for even i; 1, 2, ... for odd i, so that short caches are covered),
left-padded to --past (pad positions: zero keys and values, attention mask 0); its input is the
next token of the text at position k. The past is the model's own cache on those k tokens.
Encoder samples are sentences of the text, right-padded (or cut) to --sequence tokens.

Requirements: Python 3.9+, torch, transformers, numpy (and the model's own dependencies). The
export runs on CPU in float32 with eager attention and the TorchScript exporter
(`dynamo=False`), opset 17 by default. This script is documentation and a tool; CI does not run
it. Examples:

  python examples/export_hf.py decoder HuggingFaceTB/SmolLM2-135M -o out/smollm --text plays.txt
  cachemirc compile out/smollm/model.onnx --calibration out/smollm/calib.json --generation \\
      --max-context 16 --encrypt-from /model/model/embed_tokens/Gather_output_0 \\
      --params N16BootFull --slots 2048 -o out/smollm.plan

  python examples/export_hf.py encoder sentence-transformers/all-MiniLM-L6-v2 -o out/minilm
  cachemirc import out/minilm/model.onnx --dim batch=1 --dim sequence=16    # names, shapes

The --encrypt-from value is the output of the token-embedding lookup (GPT-2:
/model/transformer/wte/Gather_output_0); `cachemirc import MODEL.onnx --dim batch_size=1 ...
--emit ir` lists the value names, which follow the model's module names.
"""

import argparse
import inspect
import json
import os
import sys

# Used when no --text is given: enough words for a few calibration windows. Real calibration
# should use text like the text the model will see (--text FILE).
DEFAULT_TEXT = (
    "The river ran high that spring, and the miller's daughter counted the days until the "
    "water fell. Her brother said the bridge would hold; their father said nothing, and went "
    "down each morning to look at the stones. When the rain stopped at last, the whole village "
    "came out to see the fields, brown and shining, and the children ran along the banks "
    "shouting at the birds. In the evening the old men talked of other floods, and of the year "
    "the mill had burned, and of how the town had built it again, stone by stone, in one summer. "
    "Nobody believed them, and everybody listened."
)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Export a Hugging Face model to ONNX (optimum-style IO) with calibration "
        "data for cachemirc.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples:")[1] if "Examples:" in __doc__ else None,
    )
    parser.add_argument("kind", choices=["decoder", "encoder"], help="what the model is")
    parser.add_argument("model", help="a Hugging Face model id or a local folder")
    parser.add_argument("-o", "--output", required=True, help="the folder to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--samples", type=int, default=32, help="calibration samples (default 32)"
    )
    parser.add_argument(
        "--past",
        type=int,
        default=15,
        help="decoder: past tokens of each calibration sample; compile with --max-context "
        "past + 1 or more (default 15)",
    )
    parser.add_argument(
        "--sequence",
        type=int,
        default=16,
        help="encoder: tokens of each calibration sentence (default 16)",
    )
    parser.add_argument(
        "--text",
        help="a UTF-8 text file for the calibration samples (default: a short built-in "
        "paragraph; give text like the model's real inputs)",
    )
    parser.add_argument(
        "--revision", help="the model revision (branch, tag or commit) to download"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow models whose code lives in their repository (read that code first)",
    )
    return parser.parse_args(argv)


def onnx_export(torch, module, args, path, input_names, output_names, dynamic_axes, opset):
    """torch.onnx.export with the TorchScript tracer, on every torch version that has it."""
    kwargs = dict(
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=opset,
        do_constant_folding=True,
    )
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    torch.onnx.export(module, args, path, **kwargs)


def cache_pairs(cache):
    """(key, value) per layer of a transformers cache object (any version) or legacy tuples."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    if hasattr(cache, "to_legacy_cache"):
        return list(cache.to_legacy_cache())
    return [tuple(pair) for pair in cache]


def decoder_shape(config):
    """(layers, kv_heads, head_dim) of a causal LM's KV cache."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return layers, kv_heads, head_dim


def write_calibration(np, out, names_arrays, outputs, description):
    """calib.json plus one calib.<name>.npy per array (`.` and `/` become `_` in file names)."""
    entries = {"inputs": [], "outputs": []}
    for kind, items in (("inputs", names_arrays), ("outputs", outputs)):
        for name, array in items:
            file = "calib." + name.replace(".", "_").replace("/", "_") + ".npy"
            np.save(os.path.join(out, file), np.ascontiguousarray(array))
            entries[kind].append(
                {"name": name, "file": file, "dtype": str(array.dtype), "shape": list(array.shape)}
            )
    calib = {"description": description, "samples": len(names_arrays[0][1])}
    calib.update(entries)
    with open(os.path.join(out, "calib.json"), "w", encoding="utf-8") as f:
        json.dump(calib, f, indent=1)


def load_model(auto_class, args, torch):
    """The model of `args.model` in float32 with eager attention (the exporters trace that), in
    evaluation mode."""
    return auto_class.from_pretrained(
        args.model,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        torch_dtype=torch.float32,
        attn_implementation="eager",
    ).eval()


def export_decoder(args, torch, np, transformers, tokenizer, text_ids):
    model = load_model(transformers.AutoModelForCausalLM, args, torch)
    layers, kv_heads, head_dim = decoder_shape(model.config)

    class DecoderWithPast(torch.nn.Module):
        """The model with its cache as flat tensors: optimum's decoder-with-past signature."""

        def __init__(self, lm):
            super().__init__()
            # Named `model`: value names read `/model/model/embed_tokens/...` for Llama-family
            # models, as in the demo's export.
            self.model = lm

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = transformers.DynamicCache()
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                return_dict=True,
            )
            flat = [t for pair in cache_pairs(out.past_key_values) for t in pair]
            return (out.logits, *flat)

    wrapper = DecoderWithPast(model).eval()
    past_names = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]

    # Traced with batch 2, sequence 2, past 3: no axis is 1, so none is specialised away.
    batch, sequence, past_len = 2, 2, 3
    example = (
        torch.randint(0, model.config.vocab_size, (batch, sequence)),
        torch.ones(batch, past_len + sequence, dtype=torch.int64),
        torch.arange(past_len, past_len + sequence).repeat(batch, 1),
        *[torch.randn(batch, kv_heads, past_len, head_dim) for _ in past_names],
    )
    dynamic_axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    for name in past_names:
        dynamic_axes[name] = {0: "batch_size", 2: "past_sequence_length"}
    for name in present_names:
        dynamic_axes[name] = {0: "batch_size", 2: "past_sequence_length + sequence_length"}
    path = os.path.join(args.output, "model.onnx")
    with torch.no_grad():
        onnx_export(
            torch,
            wrapper,
            example,
            path,
            ["input_ids", "attention_mask", "position_ids", *past_names],
            ["logits", *present_names],
            dynamic_axes,
            args.opset,
        )

    # Calibration: decode steps over windows of the text (see the module documentation).
    p = args.past
    if len(text_ids) < p + 2:
        sys.exit(f"the calibration text has {len(text_ids)} tokens; --past {p} needs {p + 2}")
    inputs = {name: [] for name in ["input_ids", "attention_mask", "position_ids", *past_names]}
    logits = []
    span = len(text_ids) - (p + 1)
    with torch.no_grad():
        for i in range(args.samples):
            k = p if i % 2 == 0 else 1 + (i // 2) % p
            start = (i * 7919) % max(span, 1)
            window = text_ids[start : start + k + 1]
            prefix = torch.tensor([window[:k]])
            out = model(input_ids=prefix, use_cache=True, return_dict=True)
            pad = p - k
            pasts = []
            for key, value in cache_pairs(out.past_key_values):
                for t in (key, value):
                    zeros = torch.zeros(1, t.shape[1], pad, t.shape[3])
                    pasts.append(torch.cat([zeros, t], dim=2))
            mask = torch.tensor([[0] * pad + [1] * (k + 1)])
            step = (torch.tensor([[window[k]]]), mask, torch.tensor([[k]]))
            result = wrapper(*step, *pasts)
            for name, t in zip(inputs, (*step, *pasts)):
                inputs[name].append(t.numpy())
            logits.append(result[0].numpy())
    integer = ("input_ids", "attention_mask", "position_ids")
    stacked = [
        (name, np.stack(v).astype(np.int64 if name in integer else np.float32))
        for name, v in inputs.items()
    ]
    write_calibration(
        np,
        args.output,
        stacked,
        [("logits", np.stack(logits).astype(np.float32))],
        f"{args.samples} decode steps over the calibration text; sample i has k real past tokens "
        f"(k = {p} for even i, 1..{p} for odd i) left-padded to {p} (zero keys and values, mask "
        f"0); its input is the next token at position k",
    )
    return {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim}


def export_encoder(args, torch, np, transformers, tokenizer, text):
    model = load_model(transformers.AutoModel, args, torch)
    sample = tokenizer(["a b"], return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class SentenceEncoder(torch.nn.Module):
        """Hidden states, then mean pooling over the mask and L2 normalisation."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, *tensors):
            feed = dict(zip(names, tensors))
            hidden = self.encoder(**feed, return_dict=True).last_hidden_state
            mask = feed["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2, dim=1)

    wrapper = SentenceEncoder(model).eval()
    example = tokenizer(
        ["the first sentence", "a second, longer sentence of the batch"],
        padding=True,
        return_tensors="pt",
    )
    dynamic_axes = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic_axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    dynamic_axes["sentence_embedding"] = {0: "batch"}
    path = os.path.join(args.output, "model.onnx")
    with torch.no_grad():
        onnx_export(
            torch,
            wrapper,
            tuple(example[n] for n in names),
            path,
            names,
            ["last_hidden_state", "sentence_embedding"],
            dynamic_axes,
            args.opset,
        )

    sentences = [s.strip() for s in text.replace("\n", " ").split(".") if s.strip()]
    if not sentences:
        sys.exit("the calibration text has no sentence")
    batches = {n: [] for n in names}
    outputs = {"last_hidden_state": [], "sentence_embedding": []}
    with torch.no_grad():
        for i in range(args.samples):
            encoded = tokenizer(
                [sentences[i % len(sentences)]],
                padding="max_length",
                truncation=True,
                max_length=args.sequence,
                return_tensors="pt",
            )
            for n in names:
                batches[n].append(encoded[n].numpy())
            hidden, embedding = wrapper(*(encoded[n] for n in names))
            outputs["last_hidden_state"].append(hidden.numpy())
            outputs["sentence_embedding"].append(embedding.numpy())
    write_calibration(
        np,
        args.output,
        [(n, np.stack(v).astype(np.int64)) for n, v in batches.items()],
        [(n, np.stack(v).astype(np.float32)) for n, v in outputs.items()],
        f"{args.samples} sentences of the calibration text, each [1, {args.sequence}] "
        f"right-padded or cut",
    )
    return {"inputs": names}


def main(argv):
    args = parse_args(argv)
    try:
        import numpy as np
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"{e}: install torch, transformers and numpy (pip install torch transformers)")
    torch.manual_seed(0)
    os.makedirs(args.output, exist_ok=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        args.model, revision=args.revision, trust_remote_code=args.trust_remote_code
    )
    if not getattr(tokenizer, "is_fast", False):
        print(
            "warning: no fast tokenizer: tokenizer.json will be missing, and `cachemir generate` "
            "needs it",
            file=sys.stderr,
        )
    tokenizer.save_pretrained(os.path.join(args.output, "tokenizer"))
    if args.text:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    else:
        text = DEFAULT_TEXT
    if args.kind == "decoder":
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        shape = export_decoder(args, torch, np, transformers, tokenizer, ids)
    else:
        if tokenizer.pad_token is None:
            sys.exit("the tokenizer has no pad token; the encoder's calibration pads sentences")
        shape = export_encoder(args, torch, np, transformers, tokenizer, text)
    record = {
        "kind": args.kind,
        "model": args.model,
        "revision": args.revision,
        "opset": args.opset,
        "samples": args.samples,
        "past": args.past if args.kind == "decoder" else None,
        "sequence": args.sequence if args.kind == "encoder" else None,
        "text": args.text or "built-in paragraph",
        "shape": shape,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
    }
    with open(os.path.join(args.output, "export.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {args.output}/model.onnx, tokenizer/, calib.json and its .npy files")


if __name__ == "__main__":
    main(sys.argv[1:])
