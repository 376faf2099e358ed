"""The SALT paper as data, read by config validation, the cost comparisons and the report alike:
published.py holds its printed numbers; mapping.py says which rows and datasets of a grid answer them."""
