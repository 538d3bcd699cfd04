"""Planning a stack: layer names, the layer graph and its C3 order, platforms, build layout. Pure."""
