"""The local playground: a web chat on 127.0.0.1 over the same core as Telegram and Discord."""

from bots.playground.app import Playground, person_named
from bots.playground.messenger import PlaygroundMessenger

__all__ = ["Playground", "PlaygroundMessenger", "person_named"]
