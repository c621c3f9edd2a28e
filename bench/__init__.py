"""Sluice benchmarks: ``python -m bench`` (or ``make bench``); see bench/README.md.

Modules: ``serving`` (the serving benchmark and its table), ``fixture`` (a registry under moto
with a model trained on the household file by the real pipeline functions), ``child`` (what the
fresh interpreters run: cold starts and the uvicorn server), ``httpload`` (the bounded load
generator) and ``stats``.
"""
