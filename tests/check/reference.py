"""Version files the schema tests share."""

from __future__ import annotations

# The published draft of a messages table: it declares a vector index on ``embedding``
# but forgets the field (BYOD-E114, reported at line 16 of the written file).
MESSAGES_DRAFT = """
parents: []
tables:
  conversations:
    location: user
    fields: {userId: string}
    indexes: {by_user: [userId]}
  messages:
    location: user
    fields:
      conversationId: id(conversations)
      userId: string
      content: string
    indexes:
      by_conversation: [conversationId]
    vector_indexes:
      embedding: {field: embedding, dimensions: 1536, filters: [userId, conversationId]}
"""
