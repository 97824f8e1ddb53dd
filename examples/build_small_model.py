"""Build a small Llama (~86M parameters by default) with a tokenizer trained on the bundled data, offline.

For machines that cannot reach a model hub (and for quick GPU checks of the trainer): the tokenizer is
:func:`agents.tiny.build_tiny_tokenizer` (byte-level BPE with the ChatML + tools chat template), the model a
randomly initialised ``LlamaForCausalLM`` sized by the flags. SFT it before PivotRL, since a random model
matches no demonstration and so yields no pivots::

    python examples/build_small_model.py --out runs/small                  # hidden 768, 12 layers: ~86M
    pivotrl sft   --config examples/sft_gpu.toml --set model=runs/small --set out_dir=runs/small-sft ...
    pivotrl train --config examples/pivotrl_gpu.toml --set model=runs/small-sft/final ...

``examples/small_model_gpu.sh`` runs these three steps with the settings used for the figures in the README.
"""

from __future__ import annotations

import argparse
import json

from agents.tiny import build_tiny_model, build_tiny_tokenizer, save_tiny


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12, help="head_dim = hidden / heads (vLLM on CPU needs >= 32)")
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size of the tokenizer")
    ap.add_argument("--context", type=int, default=4096, help="max_position_embeddings")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tokenizer = build_tiny_tokenizer(vocab_size=args.vocab)
    tokenizer.model_max_length = args.context
    model = build_tiny_model(tokenizer, hidden_size=args.hidden, layers=args.layers, heads=args.heads,
                             intermediate_size=args.intermediate, max_position_embeddings=args.context,
                             seed=args.seed)
    path = save_tiny(model, tokenizer, args.out)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"path": str(path), "params": params, "vocab": len(tokenizer), "hidden": args.hidden,
                      "layers": args.layers, "heads": args.heads, "intermediate": args.intermediate}))


if __name__ == "__main__":
    main()
