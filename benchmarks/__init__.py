"""Stand-alone performance benchmarks (`python -m benchmarks.<name>`); not part of the test suite."""
