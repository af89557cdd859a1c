"""The conversation: ordered items in their GA shape, plus the audio behind them."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from . import ids

ROOT = "root"


class ItemNotFound(KeyError):
    pass


@dataclass
class Conversation:
    id: str = field(default_factory=ids.conversation_id)
    items: list[dict[str, Any]] = field(default_factory=list)
    audio: dict[str, bytes] = field(default_factory=dict)
    "PCM16 24 kHz of user ``input_audio`` and assistant ``output_audio`` items."

    def add(self, item: dict[str, Any], previous_item_id: str | None = None) -> str | None:
        """Insert ``item`` after ``previous_item_id`` (at the end when None, first for 'root').

        Returns the id of the item now before it, as events report it.
        """
        if previous_item_id is None:
            index = len(self.items)
        elif previous_item_id == ROOT:
            index = 0
        else:
            index = self._index(previous_item_id) + 1
        self.items.insert(index, item)
        return self.items[index - 1]["id"] if index > 0 else None

    def get(self, item_id: str) -> dict[str, Any]:
        return self.items[self._index(item_id)]

    def delete(self, item_id: str) -> None:
        del self.items[self._index(item_id)]
        self.audio.pop(item_id, None)

    def previous_id(self, item_id: str) -> str | None:
        index = self._index(item_id)
        return self.items[index - 1]["id"] if index > 0 else None

    def snapshot(self, item_id: str) -> dict[str, Any]:
        return copy.deepcopy(self.get(item_id))

    def __contains__(self, item_id: object) -> bool:
        return any(item["id"] == item_id for item in self.items)

    def _index(self, item_id: str) -> int:
        for i, item in enumerate(self.items):
            if item["id"] == item_id:
                return i
        raise ItemNotFound(item_id)
