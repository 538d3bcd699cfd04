"""Publishing layers: reproducible archives, layer metadata and manifests, local exports."""
