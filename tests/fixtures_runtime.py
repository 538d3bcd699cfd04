"""Fixtures that provide real, relocatable runtime archives (filled in with the runtime work)."""
