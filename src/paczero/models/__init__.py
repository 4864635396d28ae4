"""Models for zeroth-order fine-tuning; import the module you need (only ``config`` is free of torch).

- ``config``: :class:`ModelConfig` and the names it accepts (dtypes, tracks, tiny models); no torch.
- ``loaders``: :func:`load_model`, :func:`prepare_loaded`, :func:`load_finetuned`, :func:`save_model`,
  :class:`LoadedModel` and trainable-state snapshots; SmolLM2 (GGUF), hub and local models.
- ``tiny``: the built-in tiny test models and their word-level tokenizer.
- ``lora``: LoRA target modules per architecture, top-k-block placement and seeded adapter init.
- ``trunk``: exact frozen-trunk caching (run only the trained top blocks).
- ``rng``: run library code without disturbing torch's global RNG.
"""
