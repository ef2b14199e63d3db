"""The one exception type the CLI turns into a single actionable line."""


class VlmSafetyError(Exception):
    """A user-facing error: what was wrong, where, and what would be valid — in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
