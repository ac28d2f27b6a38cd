"""Helpers for the watchlist integration tests: test photos made from the registry-shipped
sample photos, a KNN query per the vector index contract (what match does), and key listings."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from redis.commands.search.query import Query

from lfr.common import schema
from lfr.common.scores import score_from_cosine_distance
from lfr_cli.sample_photos import photo_bytes

Image = npt.NDArray[np.uint8]


def decode(data: bytes) -> Image:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, dtype=np.uint8)


def encode(image: Image, ext: str = ".jpg") -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return bytes(buffer.tobytes())


def hopper() -> bytes:
    return photo_bytes("grace_hopper")


def astronaut() -> bytes:
    return photo_bytes("astronaut")


def hopper_other_view() -> bytes:
    """Another view of Hopper: cropped off-centre and rescaled to 80 %."""
    image = decode(hopper())[40:460, 60:460]
    return encode(
        np.asarray(cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA), np.uint8)
    )


def hopper_small() -> bytes:
    """Hopper downscaled to a quarter: the detector still finds her face, ~53 px wide."""
    image = decode(hopper())
    return encode(
        np.asarray(
            cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA), np.uint8
        )
    )


def two_faces() -> bytes:
    """Hopper and the astronaut side by side, both faces large."""
    left = decode(hopper())
    right = cv2.resize(decode(astronaut()), (left.shape[0], left.shape[0]))
    return encode(np.hstack([left, right]))


def no_face() -> bytes:
    """A plain generated gradient, PNG."""
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    return encode(np.tile(ramp[None, :, None], (256, 1, 3)), ".png")


def knn(
    client: Any, watchlist_id: str, vector: npt.NDArray[np.float32], k: int = 3
) -> list[tuple[str, float]]:
    """``(entry_id, score)`` nearest first, of entries not expired now: the query match runs."""
    text = f"(@expires_at:[({time.time():.3f} +inf])=>[KNN {k} @{schema.EMBEDDING_FIELD} $v AS d]"
    query = Query(text).sort_by("d").return_fields("entry_id", "d").dialect(2)
    result = client.ft(schema.index_name(watchlist_id)).search(
        query, {"v": np.asarray(vector, "<f4").tobytes()}
    )
    return [(doc.entry_id, score_from_cosine_distance(float(doc.d))) for doc in result.docs]


def redis_state(client: Any) -> dict[bytes, Any]:
    """Every key with its value (the audit outbox included): for "the store is unchanged" and
    "everything came back" checks. Values, not ``DUMP`` bytes: a reload reorders hash fields."""
    readers = {
        b"hash": client.hgetall,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        b"stream": lambda key: client.xrange(key),
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": client.smembers,
        b"string": client.get,
    }
    return {key: readers[client.type(key)](key) for key in client.keys("*")}
