"""Bulk import of residents, beds and devices from CSV or XLSX."""
