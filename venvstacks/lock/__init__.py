"""Locking layers with uv: resolve projects, pylock processing, lock state and hashes."""
