"""Errors of the pure core."""


class ModelError(ValueError):
    """A lifecycle model file is invalid. The message names the file and the field."""


class StateError(ValueError):
    """A stored customer record cannot be read."""
