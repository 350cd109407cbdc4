"""Raw-log contract: schemas, readers, point-in-time views, labels and the synthetic lender."""
