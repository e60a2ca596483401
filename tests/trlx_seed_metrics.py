"""The two metric functions of trlx's interface document, as written there.

Only what they import is replaced: the ILQL example's ``sentiment_fn`` is a Hugging Face sentiment pipeline
(a model download), here a small word-list classifier that answers in the pipeline's format; the SFT
example's ``compute_sentiment`` is left to the user there, here the same classifier's positive probability.
"""

from __future__ import annotations

from typing import Any

POSITIVE = {"improves", "better", "clarifies", "fast", "quickly", "good", "great"}
NEGATIVE = {"breaks", "damages", "ignores", "errors", "bad", "again"}


def word_sentiment(text: str) -> float:
    """Probability that ``text`` is positive: ``(1 + positive words) / (2 + positive + negative words)``."""
    words = [w.strip(".,!?").lower() for w in text.split()]
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    return (1 + pos) / (2 + pos + neg)


def sentiment_fn(samples: list[str], batch_size: int = 16) -> list[dict[str, Any]]:
    """In the format of ``transformers.pipeline("sentiment-analysis")``: a label and its score per text."""
    out = []
    for s in samples:
        p = word_sentiment(s)
        out.append({"label": "POSITIVE", "score": p} if p >= 0.5 else {"label": "NEGATIVE", "score": 1 - p})
    return out


def compute_sentiment(samples: list[str]) -> list[float]:
    return [word_sentiment(s) for s in samples]


# --- trlx's "Sentiment Metric for ILQL", verbatim ---
def metric_fn(samples, **kwargs):
    """Compute sentiment scores for evaluation."""
    output = sentiment_fn(samples, batch_size=16)
    sentiments = [o["score"] if o["label"] == "POSITIVE" else 1 - o["score"] for o in output]
    return {"sentiments": sentiments}


# --- trlx's "Multi-Metric for SFT", verbatim (renamed: both examples are called metric_fn) ---
def sft_metric_fn(samples, prompts, outputs, **kwargs):
    """Compute multiple metrics for SFT evaluation."""
    lengths = [len(o.split()) for o in outputs]
    sentiments = compute_sentiment(samples)
    return {
        "output_length": lengths,
        "sentiment": sentiments,
    }


def token_lengths(samples, prompts, outputs, tokenizer=None, **metadata):
    """Tokens per output with the tokenizer trlx passes, plus a scalar (skipped, as trlx skips scalars)."""
    counts = [len(tokenizer.encode(o).ids) for o in outputs]
    return {"tokens": counts, "mean_tokens": sum(counts) / max(len(counts), 1)}
