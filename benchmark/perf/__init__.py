"""Speed measurements run by hand (not tests): `python -m benchmark.perf.<script> --help`."""
