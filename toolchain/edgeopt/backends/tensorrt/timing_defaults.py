"""How long an engine is timed: the printed `trtexec --loadEngine` line and `edgeopt engine time`
share these, so the two measure the same thing (trtexec's own defaults are 200 ms and 3 s; the
printed line asks for longer runs, and so does `engine time`). No imports: the CLI reads them
for its option defaults."""

WARMUP_MS = 500  # trtexec --warmUp
DURATION_S = 10  # trtexec --duration
MIN_RUNS = 10  # trtexec --iterations (its default)
