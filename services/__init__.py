"""The platform's services.

Every process starts by importing this package (``python -m services.<process>``), before
eventlet. Importing eventlet prints an eight-line deprecation banner, as a warning of a class
(``EventletDeprecationWarning``) that cannot be named before importing eventlet and with a
message starting with a newline, so neither ``PYTHONWARNINGS`` nor ``-W`` can match it
(eventlet issue #1089). A regular-expression filter can, and this is the one place that runs
first in every process: ``make dev``, compose and Kubernetes alike.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
