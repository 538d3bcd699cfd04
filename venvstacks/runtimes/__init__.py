"""Runtime interpreters: archive folders, downloads, and packing a host CPython."""
