"""Building layer environments: provision, install, link, dynamic libraries, module trees."""
