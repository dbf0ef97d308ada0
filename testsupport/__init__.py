"""Support code shared by the tests and the benchmarks (neither imports the other's modules).

``testsupport.instances``: private RabbitMQ and PostgreSQL servers that a fault test or the soak
(``bench/soak.py``) may stop, crash and restart without touching the machine's own services.
``testsupport.contracts``: the events a test's services wrote, checked against the event contracts.
"""
