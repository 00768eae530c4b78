"""Trident's own model classes, for published families transformers has no class for (or none that serves
them as published). Each is a transformers `PreTrainedModel` with its own `model_type`, registered with the
Auto classes, so the builder's export and parity and the torch engine load a converted checkpoint of it
exactly as they load any native one.

- `trident_nomic_bert`: Nomic-BERT with dynamic NTK rotary scaling computed per sequence (nomic.py).
- `trident_jina_bert`: Jina-BERT v2, ALiBi and gated MLPs, embedders and rerankers (jina_bert.py).
- `trident_jina_v3`: jina-embeddings-v3 with its LoRA task adapters chosen per input (jina_v3.py).
"""

from __future__ import annotations

import functools


@functools.cache
def register() -> None:
    """Make every Trident model type loadable by transformers' Auto classes (once per process)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from trident.models import jina_bert, jina_v3, nomic

    AutoConfig.register(nomic.TridentNomicBertConfig.model_type, nomic.TridentNomicBertConfig)
    AutoModel.register(nomic.TridentNomicBertConfig, nomic.TridentNomicBertModel)
    AutoConfig.register(jina_bert.TridentJinaBertConfig.model_type, jina_bert.TridentJinaBertConfig)
    AutoModel.register(jina_bert.TridentJinaBertConfig, jina_bert.TridentJinaBertModel)
    AutoModelForSequenceClassification.register(jina_bert.TridentJinaBertConfig,
                                                jina_bert.TridentJinaBertForSequenceClassification)
    AutoConfig.register(jina_v3.TridentJinaV3Config.model_type, jina_v3.TridentJinaV3Config)
    AutoModel.register(jina_v3.TridentJinaV3Config, jina_v3.TridentJinaV3Model)
