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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evaluators.backbones.base import BackboneSpec, Reader

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


def _dense(x: jax.Array, p: Mapping[str, jax.Array], dtype: jnp.dtype) -> jax.Array:
    return (x.astype(dtype) @ p["w"].astype(dtype)).astype(jnp.float32) + p["b"]


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
        scores = jnp.einsum("bhqd,bhkd->bhqk", q.astype(compute), k.astype(compute)).astype(jnp.float32)
        probs = jax.nn.softmax(scores / np.sqrt(width) + bias, axis=-1)
        context = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(compute), v.astype(compute)).astype(jnp.float32)
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


def greedy_match(cand: jax.Array, cand_mask: jax.Array, ref: jax.Array, ref_mask: jax.Array) -> jax.Array:
    """BERTScore ``[B, 3]`` (precision, recall, F1) by greedy cosine matching of token embeddings.

    ``cand``/``ref``: ``[B, L, H]`` token embeddings; masks ``[B, L]`` mark the tokens that count
    (special tokens excluded). Precision averages, over candidate tokens, the best cosine with a
    reference token; recall the reverse; F1 is their harmonic mean. A side with no tokens scores 0.
    """

    def unit(t: jax.Array) -> jax.Array:
        return t / jnp.maximum(jnp.linalg.norm(t, axis=-1, keepdims=True), 1e-12)

    sim = jnp.einsum("bih,bjh->bij", unit(cand), unit(ref))
    valid = cand_mask[:, :, None].astype(bool) & ref_mask[:, None, :].astype(bool)
    sim = jnp.where(valid, sim, -jnp.inf)
    cand_n = cand_mask.sum(1)
    ref_n = ref_mask.sum(1)
    best_for_cand = jnp.where(cand_mask > 0, sim.max(2), 0.0)
    best_for_ref = jnp.where(ref_mask > 0, sim.max(1), 0.0)
    precision = jnp.where(cand_n > 0, best_for_cand.sum(1) / jnp.maximum(cand_n, 1), 0.0)
    recall = jnp.where(ref_n > 0, best_for_ref.sum(1) / jnp.maximum(ref_n, 1), 0.0)
    total = precision + recall
    f1 = jnp.where(total > 0, 2 * precision * recall / jnp.where(total > 0, total, 1.0), 0.0)
    return jnp.stack([precision, recall, f1], axis=1)


def _bucket(length: int, limit: int) -> int:
    size = MIN_LENGTH
    while size < length:
        size *= 2
    return min(size, limit)


@dataclass
class Tokens:
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
        self._score = jax.jit(
            lambda p, c_ids, c_mask, c_content, r_ids, r_mask, r_content: (
                pool(hc := forward(p, c_ids, c_mask), c_mask, pooling, normalize),
                pool(hr := forward(p, r_ids, r_mask), r_mask, pooling, normalize),
                greedy_match(hc, c_content, hr, r_content),
            )
        )

    @property
    def dimension(self) -> int:
        return self.config.hidden_size

    @classmethod
    def load(cls, spec: BackboneSpec, read: Reader) -> TextEncoder:
        """Read config, weights, tokenizer and sentence-transformers settings through ``read``."""
        from tokenizers import Tokenizer

        config = BertConfig.from_json(json.loads(read("config.json")))
        params = load_params(read("model.safetensors"), config)
        tokenizer = Tokenizer.from_str(read("tokenizer.json").decode())
        pooling, normalize, max_length = "mean", False, spec.max_length
        pool_cfg = _optional_json(read, "1_Pooling/config.json")
        if pool_cfg:
            cls_token, max_tokens = pool_cfg.get("pooling_mode_cls_token"), pool_cfg.get("pooling_mode_max_tokens")
            pooling = "cls" if cls_token else "max" if max_tokens else "mean"
        modules = _optional_json(read, "modules.json")
        if modules:
            normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        st_config = _optional_json(read, "sentence_bert_config.json")
        if st_config:
            max_length = min(max_length, int(st_config["max_seq_length"]))
        max_length = min(max_length, config.max_positions)
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
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

    def extract(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Features of a batch of a ``text`` task: ``predictions`` are the candidates, ``targets`` the references."""
        return self.pair_features(list(columns["predictions"]), list(columns["targets"]))

    def pair_features(self, candidates: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
        """One pass over both columns: ``candidate`` and ``reference`` embeddings ``[n, H]`` and
        ``bertscore`` ``[n, 3]`` (precision, recall, F1), all float32."""
        n = len(candidates)
        out = {
            "candidate": np.zeros((n, self.dimension), np.float32),
            "reference": np.zeros((n, self.dimension), np.float32),
            "bertscore": np.zeros((n, 3), np.float32),
        }
        for part in self._batches(n):
            c = self.tokenize(candidates[part], self.spec.batch_size)
            r = self.tokenize(references[part], self.spec.batch_size)
            emb_c, emb_r, score = self._score(self.params, c.ids, c.mask, c.content, r.ids, r.mask, r.content)
            k = part.stop - part.start
            out["candidate"][part] = np.asarray(emb_c)[:k]
            out["reference"][part] = np.asarray(emb_r)[:k]
            out["bertscore"][part] = np.asarray(score)[:k]
        return out
