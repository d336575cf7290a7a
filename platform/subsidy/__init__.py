"""Subsidy verification (补贴核验): programmes as data, homes' monthly claims, the evidence of the bed sensors,
the civil-affairs registers, a verdict with reasons and evidence for every claim line, liveness without a
visit (无感认证), policies that find people (政策找人) and the anomaly ranking of homes.

The rules are written out in ``docs/subsidy.md``; the verification of a month is SQL over the telemetry
roll-ups (``verify_sql.py``), run by ``verify.py``.
"""
