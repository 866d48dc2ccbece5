"""The benchmark: a raw aiokafka loop, a naive Faust app and the engine side by side.

``python -m tests.bench --out bench/out`` (or ``make bench``) starts a real local
Apache Kafka broker, pre-loads one input topic and measures every contender in its
own subprocess; see :mod:`tests.bench.runner` for the phases and ``report.md`` for
the method of each measurement.
"""
