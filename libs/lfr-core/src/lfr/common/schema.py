"""Redis key and index names shared by the watchlist service (writer) and match (reader).

Defined once here so the two services cannot drift apart.
"""

from __future__ import annotations

EMBEDDING_DIM = 128
EMBEDDING_FIELD = "embedding"
KEY_ROOT = "lfr"


def watchlist_key(watchlist_id: str) -> str:
    """Hash with the watch list's own metadata (name, policy, index algorithm)."""
    return f"{KEY_ROOT}:wl:{watchlist_id}"


def entry_prefix(watchlist_id: str) -> str:
    """Prefix of every entry hash of a watch list; the vector index covers exactly these keys."""
    return f"{KEY_ROOT}:wl:{watchlist_id}:entry:"


def entry_key(watchlist_id: str, entry_id: str) -> str:
    return f"{entry_prefix(watchlist_id)}{entry_id}"


def index_name(watchlist_id: str) -> str:
    return f"{KEY_ROOT}:idx:wl:{watchlist_id}"


def deployment_key(deployment_id: str) -> str:
    return f"{KEY_ROOT}:dep:{deployment_id}"
