"""VAR (next-scale prediction) teachers: the transformer, its multi-scale VQVAE, a KV-cache
decode session, strict loading of the official files, presets (`var-d16` ... `var-d30`).

Modules: `config` (dataclasses), `vae_nets` / `quant` / `vqvae` (the tokenizer), `model` (the
transformer), `sampling` (CFG ramp, VAR top-k / top-p), `session` (incremental decoding),
`teacher` (the `Teacher` protocol), `weights` (loading, random init), `presets`, `tiny`.
"""
