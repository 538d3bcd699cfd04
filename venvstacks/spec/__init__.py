"""Reading stack specifications: files, layer fields, settings, package indexes."""
