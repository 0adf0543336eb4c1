"""The test table: every record of every family module in tests/records, in one list."""

from __future__ import annotations

import importlib
import pkgutil

import tests.records
from tests.records import Config, Record, Reject, torch_configs

RECORDS: list[Record] = [
    record
    for module in sorted(m.name for m in pkgutil.iter_modules(tests.records.__path__))
    for record in importlib.import_module(f"tests.records.{module}").RECORDS
]
BY_NAME = {record.name: record for record in RECORDS}

__all__ = ["BY_NAME", "RECORDS", "Config", "Record", "Reject", "torch_configs"]
