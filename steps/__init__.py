"""Thin ZenML steps, one per file. Imported first wherever steps run (also in a remote pod)."""

from sentibridge.zenml_speed import memoise_package_lookup

memoise_package_lookup()
