"""Trident: embedding, reranking, classification and NER served by NVIDIA Triton."""

__version__ = "0.3.0"
