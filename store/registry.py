"""Imports every module that registers migrations, in the order they must apply."""

import store.schema  # noqa: F401  (m001: evidence, events, instances)
