"""Load tests and benchmarks (not part of `make test`): sipp scenarios, `make bench-sip`."""
