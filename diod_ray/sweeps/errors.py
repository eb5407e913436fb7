"""The sweeps' argument error, below every sweep module so each can raise it."""


class PlanError(ValueError):
    """A sweep argument is invalid; the message names the option."""
