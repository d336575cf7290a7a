"""The smart elderly-care platform.

The parts live in the repository's top-level folders and import as ``eldercare.<part>``:
``devices`` (the wire contract), ``gateway``, ``ingest``, ``platform``, ``simulators``, ``dashboards``.
"""

__version__ = "0.1.0"
