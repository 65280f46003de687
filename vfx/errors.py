"""The one exception type the command line turns into a single clear line."""


class VfxError(Exception):
    """A problem with the user's input or environment, stated in one line."""
