"""Supervision (综合监管): figures per home and region, homes that need attention, credit scores and the
blacklist flag, random inspections (双随机一公开) and the one-press risk inspection (一键巡检).

The formulas are written out in ``docs/supervision.md``; the figures themselves are one SQL function,
``supervision_figures`` (migration 0006), shared by the API and the Grafana dashboards.
"""
