"""The tamper-evident audit log: who read which personal data and who changed what, when."""
