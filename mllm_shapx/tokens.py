"""The token filter that decides which user tokens are players.

Matched on the decoded text of a token (not on token ids), so it works for any tokenizer.
"""

from __future__ import annotations

import unicodedata

TOKEN_FILTERS = ("exclude_punctuation", "none")


def is_punctuation_or_space(text: str) -> bool:
    """True for text made only of punctuation and whitespace (the empty string included)."""
    return all(ch.isspace() or unicodedata.category(ch).startswith("P") for ch in text)


def is_explainable(text: str, token_filter: str = "exclude_punctuation") -> bool:
    if token_filter == "none":
        return True
    if token_filter == "exclude_punctuation":
        return not is_punctuation_or_space(text)
    raise ValueError(f"unknown token_filter {token_filter!r}; known: {', '.join(TOKEN_FILTERS)}")


def explainable_positions(tokenizer, ids, positions, token_filter: str = "exclude_punctuation") -> list:
    """The positions whose token, decoded on its own, passes the filter: the one definition of a text player."""
    return [p for p in positions if is_explainable(tokenizer.decode([int(ids[p])]), token_filter)]
