"""FlagEmbedding's own answers for a BGE-M3 folder: run by `.venv-flag/bin/python` (`make reference-venv`), which
has FlagEmbedding; Trident's venv does not. Reads a JSON request on stdin, writes JSON on stdout:

    {"model": folder, "max_length": n, "colbert_dim": d, "texts": [...], "pairs": [[query, document], ...],
     "weights": [dense, sparse, colbert] | null}
 -> {"alone": [{"dense_vecs", "lexical_weights", "colbert_vecs"} per text, each encoded alone],
     "batch": the same of all texts in one encode call,
     "scores": [compute_score of each pair alone], "batch_scores": compute_score of all pairs in one call}

BGEM3FlagModel as its model card loads it, in float32 on CPU, with its query and passage max lengths set to the
model's own maximum (its defaults are a fixed 512). Stands alone: imports nothing of Trident.
"""

from __future__ import annotations

import json
import sys


def plain(encoded: dict) -> dict:
    return {"dense_vecs": encoded["dense_vecs"].tolist(),
            "lexical_weights": [{str(k): float(v) for k, v in row.items()} for row in encoded["lexical_weights"]],
            "colbert_vecs": [vectors.tolist() for vectors in encoded["colbert_vecs"]]}


def main() -> None:
    from FlagEmbedding import BGEM3FlagModel

    request = json.load(sys.stdin)
    n = request["max_length"]
    model = BGEM3FlagModel(request["model"], use_fp16=False, devices="cpu", colbert_dim=request["colbert_dim"],
                           query_max_length=n, passage_max_length=n)
    kinds = {"return_dense": True, "return_sparse": True, "return_colbert_vecs": True}
    texts, pairs = request["texts"], [tuple(pair) for pair in request["pairs"]]
    alone = [plain(model.encode([text], **kinds)) for text in texts]
    answer = {
        "alone": [{key: values[0] for key, values in encoded.items()} for encoded in alone],
        "batch": plain(model.encode(texts, **kinds)),
        "scores": [{mode: values[0] for mode, values in model.compute_score(
            [pair], weights_for_different_modes=request["weights"]).items()} for pair in pairs],
        "batch_scores": model.compute_score(pairs, weights_for_different_modes=request["weights"]),
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
