"""Unlearning harmful completions in a VLM's language model (paper 2), and its baselines.

`data` turns the configured sources into forget / helpful / normal examples, `batches` turns
examples into model inputs whose loss reads answer tokens only, `methods` holds one small loss per
recipe (registered by name), `model_setup` decides which parameters train (LoRA through PEFT by
default), `trainer` is the loop, `cost` the FLOP estimate and `results` the before/after metrics.
`vlmsafety.tasks.unlearn` ties them together for `task=unlearn` (docs/unlearning.md).
"""
