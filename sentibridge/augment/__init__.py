"""Augmentation of the train split: embeddings, retrieval, self-alignment and demonstrations."""
