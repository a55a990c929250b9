class ApplicationError(Exception):
    """A write the hub refuses, with a message meant for the person or system that asked."""

    def __init__(self, message: str, *, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
