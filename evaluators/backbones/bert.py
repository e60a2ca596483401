"""A BERT-family sentence encoder in JAX, loading a Hugging Face / sentence-transformers layout.

The checkpoint directory (read through a :data:`~evaluators.backbones.base.Reader`) holds ``config.json`` (``BertModel``), ``model.safetensors``,
``tokenizer.json`` and, optionally, the sentence-transformers files ``modules.json`` (whether the
embedding is L2-normalised), ``1_Pooling/config.json`` (mean / CLS / max pooling) and
``sentence_bert_config.json`` (``max_seq_length``). The forward pass is the BERT encoder (post-layer
norm, exact-erf GELU), jit-compiled once per ``(batch_size, padded length)`` shape; lengths are padded
to powers of two, batches to ``batch_size`` rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from evaluators.backbones.base import BackboneSettingError, BackboneSpec, Reader
from evaluators.lazyjax import jax, jnp

Params = dict[str, Any]
MIN_LENGTH = 16


@dataclass(frozen=True)
class BertConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_positions: int
    vocab_size: int = 30522

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BertConfig:
        if data.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {data.get('hidden_act')!r} (only exact 'gelu')")
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        return cls(
            int(data["hidden_size"]),
            int(data["num_hidden_layers"]),
            int(data["num_attention_heads"]),
            int(data["intermediate_size"]),
            float(data.get("layer_norm_eps", 1e-12)),
            int(data.get("max_position_embeddings", 512)),
            int(data.get("vocab_size", 30522)),
        )


def _optional_json(read: Reader, name: str) -> Any:
    try:
        return json.loads(read(name))
    except FileNotFoundError:
        return None


def load_params(payload: bytes, config: BertConfig) -> Params:
    """Safetensors bytes -> a pytree of float32 arrays (``bert.`` prefixes dropped)."""
    from safetensors.numpy import load

    raw = {k.removeprefix("bert."): v for k, v in load(payload).items()}

    def get(name: str) -> np.ndarray:
        return np.asarray(raw[name], np.float32)

    def dense(prefix: str) -> dict[str, np.ndarray]:
        return {"w": get(f"{prefix}.weight").T.copy(), "b": get(f"{prefix}.bias")}

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {"g": get(f"{prefix}.weight"), "b": get(f"{prefix}.bias")}

    layers = []
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}"
        layers.append(
            {
                "q": dense(f"{p}.attention.self.query"),
                "k": dense(f"{p}.attention.self.key"),
                "v": dense(f"{p}.attention.self.value"),
                "o": dense(f"{p}.attention.output.dense"),
                "ln1": norm(f"{p}.attention.output.LayerNorm"),
                "up": dense(f"{p}.intermediate.dense"),
                "down": dense(f"{p}.output.dense"),
                "ln2": norm(f"{p}.output.LayerNorm"),
            }
        )
    return {
        "word": get("embeddings.word_embeddings.weight"),
        "position": get("embeddings.position_embeddings.weight"),
        "token_type": get("embeddings.token_type_embeddings.weight"),
        "ln": norm("embeddings.LayerNorm"),
        "layers": layers,
    }


def _layer_norm(x: jax.Array, p: Mapping[str, jax.Array], eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return (x32 - mean) * jax.lax.rsqrt(var + eps) * p["g"] + p["b"]


def _precision(dtype: jnp.dtype) -> jax.lax.Precision:
    """Full float32 products for a float32 encoder (a GPU's default, TF32, moved sentence embeddings by about 1e-4
    against sentence-transformers); the device's default for bfloat16."""
    return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else jax.lax.Precision.DEFAULT


def _dense(x: jax.Array, p: Mapping[str, jax.Array], dtype: jnp.dtype) -> jax.Array:
    product = jnp.matmul(x.astype(dtype), p["w"].astype(dtype), precision=_precision(dtype))
    return product.astype(jnp.float32) + p["b"]


def encoder(params: Params, ids: jax.Array, mask: jax.Array, *, config: BertConfig, dtype: str) -> jax.Array:
    """Last hidden states ``[B, L, H]`` float32 for token ids ``[B, L]`` (int32) and mask ``[B, L]`` (0/1)."""
    compute = jnp.dtype(dtype)
    batch, length = ids.shape
    heads, width = config.num_heads, config.hidden_size // config.num_heads
    x = params["word"][ids] + params["position"][:length][None] + params["token_type"][0][None, None]
    x = _layer_norm(x, params["ln"], config.layer_norm_eps)
    bias = (1.0 - mask[:, None, None, :].astype(jnp.float32)) * jnp.finfo(jnp.float32).min
    for layer in params["layers"]:

        def split(t: jax.Array) -> jax.Array:
            return t.reshape(batch, length, heads, width).transpose(0, 2, 1, 3)

        q, k, v = (split(_dense(x, layer[n], compute)) for n in ("q", "k", "v"))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q.astype(compute), k.astype(compute), precision=_precision(compute))
        scores = scores.astype(jnp.float32)
        probs = jax.nn.softmax(scores / np.sqrt(width) + bias, axis=-1)
        context = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(compute), v.astype(compute), precision=_precision(compute))
        context = context.astype(jnp.float32)
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, config.hidden_size)
        x = _layer_norm(_dense(context, layer["o"], compute) + x, layer["ln1"], config.layer_norm_eps)
        hidden = jax.nn.gelu(_dense(x, layer["up"], compute), approximate=False)
        x = _layer_norm(_dense(hidden, layer["down"], compute) + x, layer["ln2"], config.layer_norm_eps)
    return x


def pool(hidden: jax.Array, mask: jax.Array, mode: str, normalize: bool) -> jax.Array:
    """Sentence embeddings ``[B, H]`` from hidden states, as sentence-transformers' Pooling (+ Normalize)."""
    m = mask[..., None].astype(jnp.float32)
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = jnp.max(jnp.where(m > 0, hidden, -1e9), axis=1)
    else:
        out = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    if normalize:
        out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


def greedy_match(
    cand: jax.Array,
    cand_mask: jax.Array,
    ref: jax.Array,
    ref_mask: jax.Array,
    cand_w: jax.Array | None = None,
    ref_w: jax.Array | None = None,
) -> jax.Array:
    """BERTScore ``[B, 3]`` (precision, recall, F1) by greedy cosine matching of token embeddings.

    ``cand``/``ref``: ``[B, L, H]`` token embeddings; masks ``[B, L]`` mark the tokens that count (special
    tokens and padding excluded); ``cand_w``/``ref_w``: optional ``[B, L]`` token weights (idf; default 1).
    Precision is the weighted mean, over candidate tokens, of the best cosine with a reference token;
    recall the reverse; F1 their harmonic mean (torchmetrics' definition). A pair with an empty side (no
    content token, e.g. ``""``) scores 0 for precision, recall and F1, as bert-score's ``score`` sets it
    (torchmetrics' ``BERTScore`` leaves the empty side's precision or recall NaN and its F1 0); a side whose
    weights sum to 0 (every token of idf 0) also scores 0.
    """

    def unit(t: jax.Array) -> jax.Array:
        return t / jnp.maximum(jnp.linalg.norm(t, axis=-1, keepdims=True), 1e-12)

    cand_live, ref_live = cand_mask > 0, ref_mask > 0
    cand_w = cand_mask if cand_w is None else jnp.where(cand_live, cand_w, 0.0)
    ref_w = ref_mask if ref_w is None else jnp.where(ref_live, ref_w, 0.0)
    sim = jnp.einsum("bih,bjh->bij", unit(cand), unit(ref), precision=jax.lax.Precision.HIGHEST)
    sim = jnp.where(cand_live[:, :, None] & ref_live[:, None, :], sim, -jnp.inf)
    both = (cand_live.any(1) & ref_live.any(1))[:, None]  # an empty side leaves no token to match
    best_for_cand = jnp.where(cand_live & both, sim.max(2), 0.0)
    best_for_ref = jnp.where(ref_live & both, sim.max(1), 0.0)
    cand_total, ref_total = cand_w.sum(1), ref_w.sum(1)
    precision = jnp.where(cand_total > 0, (best_for_cand * cand_w).sum(1) / jnp.maximum(cand_total, 1e-12), 0.0)
    recall = jnp.where(ref_total > 0, (best_for_ref * ref_w).sum(1) / jnp.maximum(ref_total, 1e-12), 0.0)
    total = precision + recall
    f1 = jnp.where(total > 0, 2 * precision * recall / jnp.where(total > 0, total, 1.0), 0.0)
    return jnp.stack([precision, recall, f1], axis=1)


def idf_weights(document_frequency: np.ndarray, documents: int) -> np.ndarray:
    """Token idf ``[V]`` float32: ``log((M + 1) / (df + 1))`` for ``M`` reference texts, ``df`` the number of
    them holding the token (torchmetrics' and bert-score's definition; an unseen token gets ``log(M + 1)``)."""
    return np.log((documents + 1.0) / (np.asarray(document_frequency, np.float64) + 1.0)).astype(np.float32)


def load_tokenizer(spec: BackboneSpec, read: Reader, config: BertConfig | None = None) -> tuple[Any, int]:
    """``(tokenizer, max_length)`` of a checkpoint: truncating at the spec's ``max_length`` (refused beyond the
    model's positions), or without one as sentence-transformers does (the checkpoint's ``max_seq_length``, else
    256, within the positions); no padding. Reads no weights."""
    from tokenizers import Tokenizer

    config = config or BertConfig.from_json(json.loads(read("config.json")))
    tokenizer = Tokenizer.from_str(read("tokenizer.json").decode())
    if spec.max_length is not None and spec.max_length > config.max_positions:
        raise BackboneSettingError(
            f"backbone.max_length {spec.max_length} is beyond the {config.max_positions} positions the model has; "
            f"set it to at most {config.max_positions}"
        )
    max_length = spec.max_length
    if max_length is None:
        st_config = _optional_json(read, "sentence_bert_config.json")
        max_length = min(int(st_config["max_seq_length"]) if st_config else 256, config.max_positions)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, max_length


def document_frequency(tokenizer: Any, vocab_size: int, texts: Sequence[str]) -> np.ndarray:
    """``[V]`` int64: in how many of ``texts`` each token id occurs, after truncation; special tokens are not
    counted (their weight is 0 whatever their idf). Sums over disjoint sets of texts add up."""
    counts = np.zeros(vocab_size, np.int64)
    for encoding in tokenizer.encode_batch([str(t) for t in texts]):
        ids = np.asarray(encoding.ids, np.int64)[np.asarray(encoding.special_tokens_mask) == 0]
        counts[np.unique(ids)] += 1
    return counts


def _bucket(length: int, limit: int) -> int:
    size = MIN_LENGTH
    while size < length:
        size *= 2
    return min(size, limit)


class Tokens(NamedTuple):
    """A padded batch: ids and masks ``[B, L]`` int32; ``content`` masks out [CLS]/[SEP]/padding."""

    ids: np.ndarray
    mask: np.ndarray
    content: np.ndarray


class TextEncoder:
    """A loaded sentence encoder: tokenizer, frozen parameters and compiled functions."""

    def __init__(
        self,
        spec: BackboneSpec,
        config: BertConfig,
        params: Params,
        tokenizer: Any,
        pooling: str,
        normalize: bool,
        max_length: int,
    ) -> None:
        self.spec = spec
        self.config = config
        self.params = jax.device_put(params)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        forward = partial(encoder, config=config, dtype=spec.dtype)
        self._embed = jax.jit(lambda p, ids, mask: pool(forward(p, ids, mask), mask, pooling, normalize))
        self._hidden = jax.jit(forward)

        def score(p: Params, c: Tokens, r: Tokens, idf: jax.Array | None) -> tuple[jax.Array, ...]:
            hc, hr = forward(p, c.ids, c.mask), forward(p, r.ids, r.mask)
            out = (
                pool(hc, c.mask, pooling, normalize),
                pool(hr, r.mask, pooling, normalize),
                greedy_match(hc, c.content, hr, r.content),
            )
            if idf is None:
                return out
            return (*out, greedy_match(hc, c.content, hr, r.content, idf[c.ids], idf[r.ids]))

        self._score = jax.jit(score)

    @property
    def dimension(self) -> int:
        return self.config.hidden_size

    @classmethod
    def load(cls, spec: BackboneSpec, read: Reader) -> TextEncoder:
        """Read config, weights, tokenizer and sentence-transformers settings through ``read``."""

        config = BertConfig.from_json(json.loads(read("config.json")))
        params = load_params(read("model.safetensors"), config)
        tokenizer, max_length = load_tokenizer(spec, read, config)
        pooling, normalize = "mean", False
        pool_cfg = _optional_json(read, "1_Pooling/config.json")
        if pool_cfg:
            cls_token, max_tokens = pool_cfg.get("pooling_mode_cls_token"), pool_cfg.get("pooling_mode_max_tokens")
            pooling = "cls" if cls_token else "max" if max_tokens else "mean"
        modules = _optional_json(read, "modules.json")
        if modules:
            normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        return cls(spec, config, params, tokenizer, pooling, normalize, max_length)

    def tokenize(self, texts: Sequence[str], rows: int) -> Tokens:
        """Tokens of ``texts`` padded to ``rows`` rows and a power-of-two length."""
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        longest = max((len(e.ids) for e in encodings), default=1)
        length = _bucket(longest, self.max_length)
        ids = np.zeros((rows, length), np.int32)
        mask = np.zeros((rows, length), np.int32)
        content = np.zeros((rows, length), np.int32)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            special = np.asarray(e.special_tokens_mask, np.int32)
            content[i, :n] = 1 - special
        return Tokens(ids, mask, content)

    def _batches(self, n: int) -> list[slice]:
        step = self.spec.batch_size
        return [slice(s, min(n, s + step)) for s in range(0, n, step)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings ``[n, H]`` float32."""
        out = np.zeros((len(texts), self.dimension), np.float32)
        for part in self._batches(len(texts)):
            tokens = self.tokenize(texts[part], self.spec.batch_size)
            result = self._embed(self.params, tokens.ids, tokens.mask)
            out[part] = np.asarray(result)[: part.stop - part.start]
        return out

    def token_states(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its last hidden states ``[tokens, H]`` (special tokens included), float32."""
        out: list[np.ndarray] = []
        for part in self._batches(len(texts)):
            tokens = self.tokenize(texts[part], self.spec.batch_size)
            hidden = np.asarray(self._hidden(self.params, tokens.ids, tokens.mask))
            out.extend(hidden[i, : tokens.mask[i].sum()] for i in range(part.stop - part.start))
        return out

    def extract(self, columns: Mapping[str, np.ndarray], idf: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Features of a batch of a ``text`` task: ``predictions`` are the candidates, ``targets`` the references."""
        return self.pair_features(list(columns["predictions"]), list(columns["targets"]), idf)

    def document_frequency(self, texts: Sequence[str]) -> np.ndarray:
        """``[V]`` int64: in how many of ``texts`` each token id occurs (see :func:`document_frequency`)."""
        return document_frequency(self.tokenizer, self.config.vocab_size, texts)

    def pair_features(
        self, candidates: Sequence[str], references: Sequence[str], idf: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """One pass over both columns: ``candidate`` and ``reference`` embeddings ``[n, H]``, ``bertscore``
        ``[n, 3]`` (precision, recall, F1) and, given token weights ``idf`` ``[V]`` (see :func:`idf_weights`),
        ``bertscore_idf`` ``[n, 3]`` with each token weighted by its idf; all float32."""
        n = len(candidates)
        out = {
            "candidate": np.zeros((n, self.dimension), np.float32),
            "reference": np.zeros((n, self.dimension), np.float32),
            "bertscore": np.zeros((n, 3), np.float32),
        }
        if idf is not None:
            out["bertscore_idf"] = np.zeros((n, 3), np.float32)
        weights = None if idf is None else jnp.asarray(idf, jnp.float32)
        names = list(out)
        for part in self._batches(n):
            c = self.tokenize(candidates[part], self.spec.batch_size)
            r = self.tokenize(references[part], self.spec.batch_size)
            k = part.stop - part.start
            for name, value in zip(names, self._score(self.params, c, r, weights), strict=True):
                out[name][part] = np.asarray(value)[:k]
        return out
