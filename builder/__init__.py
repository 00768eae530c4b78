"""Offline builder: Hugging Face checkpoint -> checked engine -> Triton model repository."""
