"""A least-recently-used mapping with a bound on entries and, optionally, on their summed weight.

Why one: the engines cache tokenizations (texts to ids, counts, rendered templates) on the serving path, and each
cache must stay bounded however many distinct prompts come by. Not thread-safe by itself: callers that share one
across threads hold their own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LRU(OrderedDict[Any, Any]):
    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._weights: dict[Any, int] = {}
        self.weight = 0

    def get_fresh(self, key: Any) -> Any:
        """The value (None if absent), marked as just used."""
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: Any, value: Any, weight: int = 1) -> None:
        """Store ``value``, then drop the least recently used entries while a bound is exceeded."""
        if key in self:
            self.weight -= self._weights.pop(key, 0)
        self[key] = value
        self.move_to_end(key)
        self._weights[key] = weight
        self.weight += weight
        while len(self) > self.max_entries or (self.max_weight is not None and self.weight > self.max_weight):
            old, _ = self.popitem(last=False)
            self.weight -= self._weights.pop(old, 0)
