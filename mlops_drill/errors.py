"""One exception type for problems a user can fix.

The CLI prints a :class:`DrillError` as a single line (no traceback), so each
message must say what is wrong and what to do about it.
"""


class DrillError(Exception):
    """A problem the user can act on; ``str()`` is the one line shown to them."""
