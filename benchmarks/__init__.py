"""Speed and memory comparisons with diffusers (see benchmarks/RESULTS.md); not part of the node pack."""
