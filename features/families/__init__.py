"""One module per feature family; each exposes ``FAMILY`` and ``build(...)``.

``build(tables, spine, settings, timezone)`` returns the family's feature definitions and a
lazy frame keyed by ``application_id`` with one row per spine application.
"""
