"""Regular visits to elders living alone (独居老人巡访): the home's staff record them, the due list tells them whom to
visit next, and regulators get the coverage of key (monthly) and general (yearly) subjects.

The rules (who is on the list, key or general, which visits count, when the next is due) are SQL functions of
migration 0031, used by every query here; ``docs/supervision.md`` explains them.
"""
