"""bentogate: governed, load-gated, zero-downtime releases of BentoML models.

This package wires the parts (``governance``, ``bentos``, ``haproxy``, ``loadtest``) into the
release workflow and the CLI. Importing it has no side effects and imports no part.
"""

__version__ = "0.1.0"
