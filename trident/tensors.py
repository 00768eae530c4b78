"""Names of the tensors that flow through a Trident ensemble: the contract between its steps."""

# Ensemble inputs (per item: every tensor is [batch, 1] so Triton can batch requests).
TEXT = "TEXT"  # TYPE_STRING, UTF-8
TEXT_PAIR = "TEXT_PAIR"  # TYPE_STRING, the document of a (query, document) pair; rerankers only
TRUNCATE = "TRUNCATE"  # TYPE_BOOL, default true: cut inputs longer than the model's maximum
TRUNCATE_LEFT = "TRUNCATE_LEFT"  # TYPE_BOOL, default false: cut from the start instead of the end
NORMALIZE = "NORMALIZE"  # TYPE_BOOL, default: the model's own (sentence-transformers Normalize)
DIMENSIONS = "DIMENSIONS"  # TYPE_INT32, default 0 = all: Matryoshka truncation before normalizing
# TYPE_INT32, default 0 = none: the LoRA adapter of a model that has them (ModelSpec.adapters), index + 1
ADAPTER = "ADAPTER"
MAX_TOKENS = "MAX_TOKENS"  # TYPE_INT32, default 0 = the model's maximum: a lower cap per input (per document of a pair)
# Mean-pooled embedding models: how the tokenizer lays a request's texts out over the engine's rows (trident.spans).
LATE_CHUNKING = "LATE_CHUNKING"  # TYPE_BOOL, default false: the request's texts are consecutive chunks of ONE document
CHUNK_LONG = "CHUNK_LONG"  # TYPE_BOOL, default false: an input past the maximum is split into windows, not cut
PROMPT = "PROMPT"  # TYPE_STRING, default "": with either of the two, the prompt, tokenized apart from the texts

# The ids ensemble's input (`<model>_ids`, trident.model_names.ids_model), in place of TEXT.
TOKEN_IDS = "TOKEN_IDS"  # TYPE_INT64 [batch, longest]: the client's token ids, right-padded with PAD_SENTINEL
PAD_SENTINEL = -1  # never a token id: the ids stage reads each row up to its first sentinel

# Between the tokenizer (or the ids stage) and the engine.
INPUT_IDS = "INPUT_IDS"  # TYPE_INT64 [batch, longest], right-padded
TOKEN_TYPE_IDS = "TOKEN_TYPE_IDS"  # TYPE_INT64 [batch, longest]
NUM_TOKENS = "NUM_TOKENS"  # TYPE_INT32 [batch, 1]: tokens actually processed, also an ensemble output
# TYPE_INT64 [batch, 1]: nanoseconds the tokenizer (or ids) step spent on the request, spread over its items so
# that they sum to it; an ensemble output (x-tokenization-time).
TOKENIZE_NS = "TOKENIZE_NS"

# Between the tokenizer and the engine, only with LATE_CHUNKING or CHUNK_LONG (trident.spans): the engine runs each
# row's windows and mean-pools each item's token ranges instead of pooling row by row.
WINDOWS = "WINDOWS"  # TYPE_INT32 [batch, most windows]: the lengths of the windows packed in each row, 0 after
POOL_RANGES = "POOL_RANGES"  # TYPE_INT32 [batch, most ranges, 2]: [start, end) over the request's tokens, (0, 0) after
LAID_OUT = (WINDOWS, POOL_RANGES)  # outputs the tokenizer answers only for such requests (Triton then has none)

# Engine and ensemble outputs.
POOLED = "POOLED"  # TYPE_FP32 [batch, dim]: pooled, not normalized
# TYPE_FP32 [batch, longest, width]: one vector per token, zero-padded past NUM_TOKENS: the encoder's last hidden
# state (/embed_all), or a multi-vector model's projected token vectors.
TOKEN_EMBEDDINGS = "TOKEN_EMBEDDINGS"
EMBEDDINGS = "EMBEDDINGS"  # TYPE_FP32 [batch, dim or DIMENSIONS]

# Reranking, classification and NER (which task sends which: its row in trident.tasks).
RAW_SCORES = "RAW_SCORES"  # TYPE_BOOL, default false: return logits instead of sigmoid / softmax
AGGREGATION_STRATEGY = "AGGREGATION_STRATEGY"  # TYPE_STRING, NER: none | simple | first | average | max
OFFSETS = "OFFSETS"  # TYPE_INT32 [batch, longest, 2]: each token's character span in TEXT; NER only
WORD_IDS = "WORD_IDS"  # TYPE_INT32 [batch, longest]: each token's word index, -1 for special tokens
LOGITS = "LOGITS"  # TYPE_FP32 [batch, labels], or [batch, longest, labels] for NER
SCORES = "SCORES"  # TYPE_FP32 [batch, labels]: probabilities, or logits with RAW_SCORES
RESULT = "RESULT"  # TYPE_STRING [batch, 1]: NER entities of one text as a JSON list

# Multi-vector (ColBERT-style) models.
SIDE = "SIDE"  # TYPE_STRING, default "": "query" | "document": which side's lengths, expansion and masks apply
# TYPE_INT32 [batch, longest]: 1 where other tokens may attend to the token; a query's expansion tokens are 0
# (they are encoded, and scored, but not attended to). Absent: every real token.
ATTENTION_MASK = "ATTENTION_MASK"
VECTORS = "VECTORS"  # TYPE_FP32 [batch, longest, dim]: the vectors that score (MaxSim), zero-padded
NUM_VECTORS = "NUM_VECTORS"  # TYPE_INT32 [batch, 1]: how many rows of VECTORS are each input's

# Hybrid (BGE-M3) models: the engine's per-token lexical weight, relu(sparse_linear(h)), zero-padded.
TOKEN_WEIGHTS = "TOKEN_WEIGHTS"  # TYPE_FP32 [batch, longest, 1]

# Sparse (SPLADE) embeddings: the engine's POOLED vector is over the vocabulary; postprocess keeps its non-zeros.
TOP_K = "TOP_K"  # TYPE_INT32, default 0 = all: keep the k largest values of each vector
SPARSE_INDICES = "SPARSE_INDICES"  # TYPE_INT32 [batch, longest]: vocabulary ids of the non-zeros, ascending, -1 after
SPARSE_VALUES = "SPARSE_VALUES"  # TYPE_FP32 [batch, longest]: their values, 0 after

# What a step assumes for an option tensor a request does not send (NORMALIZE's default is the model's own): the
# gateway sends an option only when it differs, so a plain request carries fewer tensors through every hop.
DEFAULTS = {TRUNCATE: True, TRUNCATE_LEFT: False, MAX_TOKENS: 0, DIMENSIONS: 0, ADAPTER: 0, RAW_SCORES: False,
            TOP_K: 0, SIDE: b"", AGGREGATION_STRATEGY: b"none", LATE_CHUNKING: False, CHUNK_LONG: False, PROMPT: b""}

# Triton data type of every tensor above: the repository writer declares them from this table.
TYPES = {
    TEXT: "TYPE_STRING", TEXT_PAIR: "TYPE_STRING", TRUNCATE: "TYPE_BOOL", TRUNCATE_LEFT: "TYPE_BOOL",
    NORMALIZE: "TYPE_BOOL", DIMENSIONS: "TYPE_INT32", MAX_TOKENS: "TYPE_INT32", TOKEN_IDS: "TYPE_INT64",
    INPUT_IDS: "TYPE_INT64", TOKEN_TYPE_IDS: "TYPE_INT64", NUM_TOKENS: "TYPE_INT32", TOKENIZE_NS: "TYPE_INT64",
    POOLED: "TYPE_FP32", TOKEN_EMBEDDINGS: "TYPE_FP32", EMBEDDINGS: "TYPE_FP32", RAW_SCORES: "TYPE_BOOL",
    AGGREGATION_STRATEGY: "TYPE_STRING",
    OFFSETS: "TYPE_INT32", WORD_IDS: "TYPE_INT32", LOGITS: "TYPE_FP32", SCORES: "TYPE_FP32", RESULT: "TYPE_STRING",
    ADAPTER: "TYPE_INT32", TOP_K: "TYPE_INT32", SPARSE_INDICES: "TYPE_INT32", SPARSE_VALUES: "TYPE_FP32",
    SIDE: "TYPE_STRING", ATTENTION_MASK: "TYPE_INT32", VECTORS: "TYPE_FP32", NUM_VECTORS: "TYPE_INT32",
    LATE_CHUNKING: "TYPE_BOOL", CHUNK_LONG: "TYPE_BOOL", PROMPT: "TYPE_STRING", WINDOWS: "TYPE_INT32",
    POOL_RANGES: "TYPE_INT32", TOKEN_WEIGHTS: "TYPE_FP32",
}
