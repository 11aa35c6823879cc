"""Development environment helpers: real servers for the tests, benchmarks and demo."""
