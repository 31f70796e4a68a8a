"""codelora: LoRA fine-tuning of code LLMs, with checkpoints chosen by running the code they write."""

__version__ = "0.1.0"
