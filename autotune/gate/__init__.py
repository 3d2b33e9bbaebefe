"""The CI regression gate: record a pinned setup's measurements, then check a build against
them (or measure two setups or two server binaries side by side), on three signals judged
separately: throughput, acceptance and correctness."""
