"""The LLM: base model loading, instruction records, LoRA training, merging, precision."""
