"""Realistic content for a user's deployment at schema version 1 (the demo and the
integration tests): conversations with threaded messages, memories and tasks that point
back at them, notes, files, a project, bookmarks and usage records.

The content deliberately includes what later versions migrate: tasks without a priority
and with the retired ``cancelled`` status, conversations that still carry ``model``, notes
with ``content`` (renamed to ``body`` later) and usage dates as ``YYYY-MM-DD`` strings.
Documents go in through the bundle's own ``byod:importPage`` (admin key), so the ids that
come back are real ids of that deployment.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from engine.ports.deployment import FunctionRunner

__all__ = ["seed_user"]

_TOPICS = [
    ("Trip to Lisbon", ["What should I pack for 4 days in Lisbon in May?",
                        "Light layers, comfortable shoes for the hills, a rain jacket.",
                        "Which neighbourhoods are best for food?",
                        "Alfama and Bairro Alto; try a tasca for lunch."]),
    ("Quarterly planning", ["Summarise the Q3 goals we discussed.",
                            "Ship the BYOD beta, cut p95 latency by 20%, hire two engineers.",
                            "Turn that into a task list.",
                            "Done: three tasks with owners and due dates."]),
    ("Rust lifetimes", ["Why does the borrow checker reject this closure?",
                        "The closure outlives the borrowed value; move it or clone.",
                        "Show me the fixed version.",
                        "Here it is, with `move` and an Arc for the shared state."]),
    ("Sourdough", ["My starter smells like acetone, is it dead?",
                   "It is hungry, not dead: feed it twice a day for a few days."]),
]
_MODELS = ["gpt-4o", "claude-sonnet", "llama-3-70b"]
_NOTE_TITLES = ["Reading list", "Meeting notes 2024-05-02", "Ideas for the blog",
                "Packing list"]


def _import(client: FunctionRunner, table: str, docs: list[dict[str, Any]]) -> list[str]:
    if not docs:
        return []
    ids = client.mutation("byod:importPage", {"table": table, "documents": docs})
    return [str(i) for i in ids]


_Put = Callable[[str, list[dict[str, Any]]], list[str]]
"""Writes documents into one table and returns their ids (and counts them)."""


def _seed_conversations(put: _Put, rng: random.Random, user_id: str,
                        t: float) -> tuple[list[str], list[str]]:
    """Conversations and their threaded messages (each turn's parent is the one before);
    returns (conversation ids, message ids), which the other tables point back at."""

    topics = rng.sample(_TOPICS, k=3)
    conv_docs = [{"userId": user_id, "title": title, "model": rng.choice(_MODELS),
                  "isPinned": i == 0, "isArchived": False, "messageCount": len(turns),
                  "lastMessageAt": t + i * 3_600_000 + len(turns) * 60_000,
                  "createdAt": t + i * 3_600_000, "updatedAt": t + i * 3_600_000}
                 for i, (title, turns) in enumerate(topics)]
    conv_ids = put("conversations", conv_docs)

    message_ids: list[str] = []
    for c, (conv_id, (_, turns)) in enumerate(zip(conv_ids, topics)):
        parent: str | None = None
        for k, text in enumerate(turns):
            at = t + c * 3_600_000 + k * 60_000
            doc: dict[str, Any] = {
                "conversationId": conv_id, "userId": user_id,
                "role": "user" if k % 2 == 0 else "assistant", "content": text,
                "createdAt": at, "updatedAt": at}
            if k % 2 == 1:
                doc.update(model=conv_docs[c]["model"], status="complete",
                           inputTokens=rng.randint(40, 400), outputTokens=rng.randint(80, 900),
                           cost=round(rng.uniform(0.0005, 0.02), 5),
                           metadata={"temperature": 0.7, "finish": "stop"})
            if parent is not None:
                doc["parentMessageId"] = parent
            [parent] = put("messages", [doc])
            message_ids.append(parent)
    return conv_ids, message_ids


def _seed_the_rest(put: _Put, rng: random.Random, user_id: str, t: float, now_ms: float,
                   conv_ids: list[str], message_ids: list[str]) -> None:
    """Memories, files, a project, notes, tasks, bookmarks and usage records, including
    the shapes later versions migrate."""

    put("memories", [
        {"userId": user_id, "content": "Prefers window seats and early flights.",
         "category": "travel", "source": "extracted", "sourceConversationId": conv_ids[0],
         "sourceMessageId": message_ids[0], "importance": 0.6, "isActive": True,
         "createdAt": t, "updatedAt": t},
        {"userId": user_id, "content": "Writes Rust and TypeScript at work.",
         "category": "work", "source": "manual", "importance": 0.8, "isActive": True,
         "createdAt": t, "updatedAt": t},
    ])
    put("files", [
        {"userId": user_id, "filename": "itinerary.pdf", "mimeType": "application/pdf",
         "size": 48_213, "status": "ready", "createdAt": t, "updatedAt": t},
        {"userId": user_id, "filename": "whiteboard.png", "mimeType": "image/png",
         "size": 912_004, "status": "ready", "createdAt": t, "updatedAt": t},
    ])
    put("projects", [{"userId": user_id, "name": "Side projects", "color": "#4f46e5",
                      "icon": "rocket", "isArchived": False, "createdAt": t, "updatedAt": t}])
    put("notes", [{"userId": user_id, "title": title,
                   "content": f"# {title}\n\n- first item\n- second item\n",
                   "isPinned": i == 0, "createdAt": t + i, "updatedAt": t + i}
                  for i, title in enumerate(rng.sample(_NOTE_TITLES, k=3))])
    put("tasks", [
        {"userId": user_id, "title": "Book the Lisbon flights", "status": "todo",
         "priority": "high", "dueDate": now_ms + 86_400_000,
         "sourceConversationId": conv_ids[0], "sourceMessageId": message_ids[0],
         "createdAt": t, "updatedAt": t},
        {"userId": user_id, "title": "Draft the Q3 plan", "status": "in_progress",
         "createdAt": t, "updatedAt": t},  # no priority: backfilled later
        {"userId": user_id, "title": "Old idea, dropped", "status": "cancelled",
         "createdAt": t, "updatedAt": t},  # folded into "done" later
        {"userId": user_id, "title": "Feed the starter", "status": "done",
         "completedAt": t + 1000, "createdAt": t, "updatedAt": t + 1000},
    ])
    put("bookmarks", [
        {"userId": user_id, "messageId": message_ids[1], "conversationId": conv_ids[0],
         "note": "good packing advice", "createdAt": t},
        {"userId": user_id, "messageId": message_ids[-1], "conversationId": conv_ids[-1],
         "createdAt": t},
    ])
    put("usageRecords", [
        {"userId": user_id, "date": f"2024-04-{day:02d}", "model": rng.choice(_MODELS),
         "inputTokens": rng.randint(1_000, 20_000), "outputTokens": rng.randint(2_000, 40_000),
         "cost": round(rng.uniform(0.05, 1.5), 4), "requestCount": rng.randint(3, 60)}
        for day in (22, 23, 24)
    ])


def seed_user(client: FunctionRunner, user_id: str, *, seed: int = 0,
              now_ms: float = 1_714_000_000_000.0) -> dict[str, int]:
    """Insert one user's content; returns documents written per table."""

    rng = random.Random(f"{user_id}:{seed}")
    counts: dict[str, int] = {}

    def put(table: str, docs: list[dict[str, Any]]) -> list[str]:
        ids = _import(client, table, docs)
        counts[table] = counts.get(table, 0) + len(ids)
        return ids

    t = now_ms - 30 * 86_400_000
    conv_ids, message_ids = _seed_conversations(put, rng, user_id, t)
    _seed_the_rest(put, rng, user_id, t, now_ms, conv_ids, message_ids)
    return counts
