"""The fixed texts of the reduced-precision gate: GATE_TEXT_COUNT varied texts of 1 to 500 words.

Deterministic (a seeded generator over the sentence bank below), so every build of a model is gated on the
same texts. Lengths are spread log-uniformly, so there are as many one- to five-word queries as there are
paragraphs past a small model's 256 tokens. The bank mixes topics, questions, numbers, code, names, emoji
and other scripts; none of it is in the int8 calibration texts (builder/calibration.py).
"""

from __future__ import annotations

import math
import random

GATE_TEXT_COUNT = 200
MAX_WORDS = 500
PAIR_LIST_SIZE = 10  # a reranker's documents per query
SEED = 17

_SENTENCES = (
    "The committee approved the budget after a long debate about public transport.",
    "How long should I boil an egg for a soft yolk?",
    "Glaciers in the Alps have lost roughly half of their volume since 1900.",
    "def add(a, b): return a + b  # a tiny Python function",
    "SELECT name, price FROM products WHERE price > 100 ORDER BY price DESC;",
    "My flight to Lisbon was delayed by three hours because of a strike.",
    "Vaccines train the immune system to recognise a pathogen without causing the disease.",
    "The recipe calls for 250 g of flour, 2 eggs and a pinch of salt.",
    "Is it safe to charge a phone overnight?",
    "Shakespeare wrote Hamlet around 1600, probably for the Globe Theatre.",
    "The GPU ran out of memory at batch size 64, so we halved it.",
    "Interest rates rose by 0.25 percentage points, the third increase this year.",
    "Der Zug nach München fährt um 14:30 Uhr von Gleis 7 ab.",
    "La tour Eiffel mesure environ 330 mètres de hauteur.",
    "El río Amazonas atraviesa Perú, Colombia y Brasil.",
    "北京是中国的首都。这是一座历史悠久的城市。",
    "Санкт-Петербург был основан Петром I в 1703 году.",
    "ستشرق الشمس غداً في الساعة السادسة صباحاً.",
    "What's the difference between a virus and a bacterium?",
    "The patient reported mild chest pain and shortness of breath after exercise.",
    "Our quarterly churn dropped to 2.1% after the new onboarding flow shipped.",
    "Please reset the router, wait thirty seconds and plug it back in.",
    "Marie Curie won Nobel Prizes in both physics and chemistry.",
    "The court ruled that the contract was void for lack of consideration.",
    "Honeybees communicate the direction of food with a waggle dance.",
    "git rebase -i HEAD~3 lets you squash the last three commits.",
    "A 30-year fixed mortgage at 6.5% on $400,000 costs about $2,528 a month.",
    "This café's croissants are flaky, buttery and worth the queue 🥐☕",
    "Wow!!! best concert ever 🎸🔥 can't wait for the next tour",
    "The derivative of sin(x) is cos(x), and the integral of 1/x is ln|x| + C.",
    "Tokyo, Osaka and Kyoto are linked by the Shinkansen high-speed rail.",
    "Remote sensing satellites measure sea surface temperature from orbit.",
    "Who painted the ceiling of the Sistine Chapel?",
    "Heavy rain is expected in the north-west, with winds up to 90 km/h.",
    "The API returns HTTP 429 when the client exceeds its rate limit.",
    "She ran the marathon in 3:12:45, a personal best by four minutes.",
    "Photosynthetic algae produce a large share of the oxygen we breathe.",
    "Replace the air filter every 15,000 miles or once a year.",
    "The museum's new wing displays bronze-age tools found near the river.",
    "Neural networks generalise poorly when the training data is biased.",
)


def gate_texts(count: int = GATE_TEXT_COUNT) -> list[str]:
    """`count` texts, each of 1 to MAX_WORDS words (log-uniform), the same on every call."""
    rng = random.Random(SEED)
    texts = []
    for _ in range(count):
        words = max(1, min(MAX_WORDS, round(math.exp(rng.uniform(0.0, math.log(MAX_WORDS))))))
        pool: list[str] = []
        while len(pool) < words:
            pool += rng.choice(_SENTENCES).split()
        start = rng.randrange(0, max(1, len(pool) - words + 1))
        texts.append(" ".join(pool[start : start + words]))
    return texts


def gate_pairs(count: int = GATE_TEXT_COUNT) -> list[tuple[str, str]]:
    """(query, document) pairs for rerankers, in lists of PAIR_LIST_SIZE that share a query (the gate judges the
    order of each list, `pair_lists`): a short text with PAIR_LIST_SIZE different longer ones."""
    texts = sorted(gate_texts(count), key=len)
    queries, documents = texts[: count // PAIR_LIST_SIZE], texts[len(texts) // 2 :]
    return [(queries[i // PAIR_LIST_SIZE], documents[i % len(documents)]) for i in range(count)]


def pair_lists(start: int, count: int = GATE_TEXT_COUNT) -> list[tuple[int, int]]:
    """The [begin, end) of each list of gate_pairs(count), the pairs placed from index `start` on."""
    return [(start + i, start + min(i + PAIR_LIST_SIZE, count)) for i in range(0, count, PAIR_LIST_SIZE)]
