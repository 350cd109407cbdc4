"""One module per feature family, each a declaration the engine (``features.engine``) reads:
an ``EventFamily`` (consumption, transactions, app behaviour, social, bureau inquiries: source,
row values, states, features, and views over all history where a family needs one) or a
``QueryFamily`` (the application's profile, our own loans' history).

``features.build.FAMILIES`` lists them in the feature table's column order.
"""
