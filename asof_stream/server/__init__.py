"""The feature server: Feast-shaped HTTP reads and pushes over the same stores (docs/http.md)."""

from __future__ import annotations

from .app import create_app, serve

__all__ = ["create_app", "serve"]
