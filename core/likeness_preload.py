"""Imported only by the image-work pool's fork server (`core.intake_pool`): loads the face model there once, so
every worker forked from it starts with it loaded and a person's first picture does not wait ~0.5 s for it. No
other module imports this (the bot's own process never holds the model)."""

from core.likeness import default_likeness

default_likeness().available()  # False (and nothing loaded) where dlib or its model files are missing
