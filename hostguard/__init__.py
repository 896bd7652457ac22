"""hostguard: answer 421 Misdirected Request for hosts this deployment does not serve."""

__version__ = "0.1.0"
