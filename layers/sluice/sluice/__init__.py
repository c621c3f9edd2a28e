"""Sluice shared runtime: contracts, specs, registry and helpers used by every function.

This package is the single home of code shared by the Lambda functions; it ships as the
``SluiceLayer`` and is imported the same way by the functions, the CLI and the tests.
"""

__version__ = "0.1.0"
