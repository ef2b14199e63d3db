"""The organism: a tiny safety-tuned VLM the project trains on a CPU, with a world whose answers are known (docs/organism.md)."""
