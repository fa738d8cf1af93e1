"""``sentibridge experiment``: compare recipes over several training seeds, beyond seed noise."""
