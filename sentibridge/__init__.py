"""sentibridge: cross-lingual sentiment analysis with retrieval-augmented LoRA instruction tuning."""

__version__ = "0.1.0"
