"""Fixtures that build tiny wheels locally for hermetic locking tests."""
