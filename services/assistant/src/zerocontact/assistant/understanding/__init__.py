"""The assistant's understanding core: pure, offline and explainable.

``Understander.load()`` indexes the Markdown knowledge base (BM25 over jieba's words) and
trains the intent classifier on ``data/train.jsonl``; ``understand(text)`` gives the intent,
article, slots and confidence with the reason; ``compose(understanding)`` the reply, checked
against the red lines. No FastAPI, MongoDB or Kafka here.
"""

from zerocontact.assistant.understanding.intents import INTENTS
from zerocontact.assistant.understanding.understander import Reply, Understander, Understanding

__all__ = ["INTENTS", "Reply", "Understander", "Understanding"]
