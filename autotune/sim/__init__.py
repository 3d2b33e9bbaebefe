"""A simulator of GPU-scale servers, for benchmarking strategies. SIMULATION, not evidence."""
