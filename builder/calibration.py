"""The int8 / uint8 ranges of an embedding model, measured once at build time on a fixed text set.

sentence-transformers' `quantize_embeddings` buckets each dimension between a minimum and a maximum taken
from calibration embeddings. Taking them from the request's own batch would make a text's int8 row depend
on what it was sent with, so the builder runs the engine it is about to serve over the texts below (each
also behind every prompt the model has), normalizes the vectors and stores `[[min per dimension], [max per
dimension]]` in the manifest (`ModelSpec.quantization_ranges`); the gateway quantizes with them and `/info`
shows them, so a client can quantize its own vectors the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from trident.postprocess import l2_normalize
from trident.spec import ModelSpec

Engine = Callable[[list[np.ndarray], list[np.ndarray] | None], list[np.ndarray]]

# Short and long, questions and statements, many topics, some numbers, code, other languages and scripts:
# the kinds of text an embedding index holds.
CALIBRATION_TEXTS = (
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "How do I reset my password?",
    "Click 'Forgot password' on the sign-in page and follow the link we e-mail you.",
    "The mitochondrion is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "best pizza near me",
    "A margherita pizza has tomato, mozzarella, basil, olive oil and salt.",
    "Who wrote Pride and Prejudice?",
    "Jane Austen published Pride and Prejudice in 1813.",
    "symptoms of the flu",
    "Influenza usually causes fever, cough, sore throat, muscle aches and fatigue.",
    "The stock market fell 3% on Tuesday after the central bank raised interest rates.",
    "Quarterly revenue grew to $4.2 billion, beating analysts' expectations.",
    "How many legs does a spider have?",
    "Spiders are arachnids with eight legs and two body segments.",
    "Install the package with pip install numpy and import it as np.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT name, email FROM users WHERE created_at > '2024-01-01' ORDER BY name;",
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    "The Eiffel Tower is 330 metres tall and was completed in 1889.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "The Amazon rainforest spans nine countries in South America.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The speed of light in a vacuum is about 299,792 kilometres per second.",
    "Shakespeare's Hamlet is a tragedy set in Denmark.",
    "Beethoven composed nine symphonies; the ninth ends with the Ode to Joy.",
    "The Great Wall of China is thousands of kilometres long.",
    "Machine learning models learn patterns from data instead of following explicit rules.",
    "A transformer encodes text as a sequence of vectors, one per token.",
    "Retrieval-augmented generation finds relevant passages before the model answers.",
    "Vector databases store embeddings and search them by similarity.",
    "Cats sleep between twelve and sixteen hours a day.",
    "Dogs were domesticated from wolves thousands of years ago.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Preheat the oven to 220°C and bake for 25 minutes until golden.",
    "Our return policy allows refunds within 30 days of purchase with a receipt.",
    "The train to Berlin leaves from platform 7 at 09:45.",
    "Please confirm your appointment for Monday at 3 pm.",
    "The meeting has been moved to Thursday; the agenda is attached.",
    "The patient presented with chest pain radiating to the left arm.",
    "Take one tablet twice a day with food.",
    "The court ruled that the contract was void for lack of consideration.",
    "Article 5 guarantees the right to liberty and security of person.",
    "The team won the championship after a penalty shoot-out.",
    "She ran the marathon in two hours and fifty-one minutes.",
    "Climate change is raising sea levels and making heat waves more frequent.",
    "Solar panels convert sunlight directly into electricity.",
    "Electric cars have fewer moving parts than petrol cars.",
    "The smartphone has a 6.1-inch screen, 128 GB of storage and a 12 MP camera.",
    "Battery drains fast after the latest update, any fix?",
    "Restart the router, wait thirty seconds, then reconnect.",
    "I loved this movie, the ending made me cry.",
    "Terrible service, the food was cold and we waited an hour.",
    "The hotel room was clean, quiet and close to the beach.",
    "Is it safe to travel there in winter?",
    "Snow chains are required on mountain roads from November to April.",
    "Octopuses have three hearts and blue blood.",
    "Honey never spoils if it is kept sealed.",
    "The human brain contains about 86 billion neurons.",
    "DNA is a double helix made of four bases: A, T, C and G.",
    "The French Revolution began in 1789 with the storming of the Bastille.",
    "The Roman Empire was divided into eastern and western halves in 395.",
    "Who painted the Mona Lisa?",
    "Leonardo da Vinci painted the Mona Lisa in the early sixteenth century.",
    "yes",
    "no thanks",
    "hello",
    "ok",
    "Thank you very much for your help!",
    "Error 404: page not found",
    "https://example.com/docs/getting-started?lang=en#install",
    "Contact support@example.com or call +1 555 0100.",
    "Invoice #2024-0042: total due €1,250.00 by 31 March.",
    "3.14159 2.71828 1.41421 1.61803",
    "Der Zug nach München hat zehn Minuten Verspätung.",
    "La réunion est reportée à jeudi prochain.",
    "¿Dónde está la estación de tren más cercana?",
    "O Brasil é o maior país da América do Sul.",
    "Il Colosseo si trova nel centro di Roma.",
    "De fiets staat achter het huis.",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "北京是中国的首都。",
    "서울은 대한민국의 수도입니다.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "नमस्ते, आप कैसे हैं?",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",  # noqa: RUF001 (Greek, as written)
    "İstanbul iki kıtaya yayılan bir şehirdir.",  # noqa: RUF001 (Turkish, as written)
    "I love this so much!!! 😀🚀🔥 👍🏽",
    "  spaces,\ttabs\tand\nnewlines  ",
    "Transformers process text as sequences of subword tokens, and every model has a maximum sequence "
    "length beyond which the input must be truncated before inference. Long documents are therefore split "
    "into passages, each embedded on its own, and a search compares the query with every passage; the "
    "best passages are then returned, or handed to a language model that writes the answer from them.",
    "The committee reviewed the proposal in detail, weighing its costs against the expected benefits, and "
    "after a long discussion agreed to fund a six-month pilot in two regions, with a report due in spring.",
)


def calibration_texts(spec: ModelSpec) -> list[str]:
    """The texts as they are and behind each of the model's prompts, as requests may send them."""
    prompts = sorted(set(spec.prompts.values()) - {""})
    return [*CALIBRATION_TEXTS, *(prompt + text for prompt in prompts for text in CALIBRATION_TEXTS)]


def ranges_of(vectors: np.ndarray) -> list[list[float]]:
    """Per dimension [min], [max] of the vectors: `quantize_embeddings`' ranges from calibration embeddings."""
    return np.vstack([vectors.min(axis=0), vectors.max(axis=0)]).astype(np.float32).tolist()


def quantization_ranges(model_dir: Path, spec: ModelSpec, engine: Engine) -> list[list[float]]:
    """Run `engine` (the one being built, with its own batching) on the calibration texts, normalized."""
    from transformers import AutoTokenizer

    from builder.parity import tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    ids, types = tokenize(tokenizer, spec, calibration_texts(spec))
    return ranges_of(l2_normalize(np.stack(engine(ids, types)).astype(np.float32)))
