"""Failures in model/ that users cause and can fix (tasks/errors.py tells them apart from bugs)."""


class ModelInputError(ValueError):
    """A file or setting the user gave model/ cannot be used (e.g. a checkpoint made for another model):
    the message names it and says what to do."""
