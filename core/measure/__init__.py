"""What every measuring step shares (loadtest, bench, tune): the payloads from the spec, the v2 request encoding,
the closed-loop load generator, perf_analyzer, and Triton's own counters."""
