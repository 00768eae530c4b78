"""Varied texts for parity tests: short, long, past the maximum length, non-ASCII, emoji."""

from __future__ import annotations

BASE = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The stock market fell sharply today.",
    "hi",
    "?",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Machine learning models turn text into vectors.",
    "Embeddings power semantic search and retrieval-augmented generation.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El zorro marrón rápido salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "I love pizza 🍕 and tacos 🌮!",
    "🚀🚀🚀 to the moon 🌕",
    "Emoji only: 😀😃😄😁",
    "naïve café résumé façade coöperate",
    "UPPER CASE TEXT SHOULD BE LOWERED BY THE TOKENIZER",
    "numbers 1234567890 and symbols #@$%^&*()",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\nin text",
    "https://example.com/path?query=1&other=two",
    "user@example.com wrote an e-mail",
    "C++ and C# are programming languages; so is Python 3.11.",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
]


def long_text(words: int, seed_word: str = "embedding") -> str:
    vocabulary = ["search", "vector", "model", "server", "triton", "token", "batch", seed_word, "fast", "text"]
    return " ".join(vocabulary[i % len(vocabulary)] + ("s" if i % 7 == 0 else "") for i in range(words))


def varied_texts() -> list[str]:
    """60 texts; several exceed 256 and 512 tokens so truncation is exercised."""
    texts = list(BASE)
    texts += [f"Sentence number {i} talks about topic {i * 7 % 13}." for i in range(10)]
    texts += [long_text(n) for n in (40, 120, 250, 300, 600, 1000)]
    texts += [" ".join(BASE[i:i + 5]) for i in range(0, 20, 5)]
    texts += ["Ünïcödé " * 80, "🍕" * 300, "word " * 2000, "a b c d e f g"]
    texts += ["The cat sat on the mat.", "A dog slept on the rug.", "Quantum computing uses qubits.",
              "Why is the sky blue?"]
    return texts
