"""Deploying published layers: safe extraction, post-install, verify and run."""
