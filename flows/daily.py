"""Deployment entrypoint for the daily job (see prefect.yaml).

The flow itself lives in the aiwatch package so that `aiwatch run`, `aiwatch serve` and a
Prefect worker all run the same code.
"""

from aiwatch.flow import daily

__all__ = ["daily"]

if __name__ == "__main__":
    daily()
