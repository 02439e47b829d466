"""Fuzz the readers: ``python -m bench.fuzz_io --n 10000 [--seed 0]`` (or ``make fuzz``).

Prints the outcome counts per family (ok, refused = one-line SpineInputError, and the failures:
crash, bad_message, leak, invalid_json, stderr_noise) and the first few failures; exit 1 if any.
Single-threaded and in-process; each input is bounded (pixel limit 4 MP) so 10,000 take minutes.
``--cli K`` also runs every K-th round of the families through ``spine-models info --header`` in a subprocess
(exit 0 + valid JSON or exit 2 + one stderr line, no traceback, no names) and counts those apart.
"""
from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

from spine_models.io.fuzz import FAMILIES, OUTCOMES, generate, run_case, run_cli_case

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="number of inputs (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="append", choices=FAMILIES, help="only these families (repeatable)")
    parser.add_argument("--show", type=int, default=10, help="failures to print (default 10)")
    parser.add_argument("--cli", type=int, default=0, metavar="K",
                        help="also run every K-th input through `spine-models info` in a subprocess (default 0: none)")
    args = parser.parse_args(argv)
    families = tuple(args.family or FAMILIES)
    counts: dict[str, collections.Counter] = {f: collections.Counter() for f in families}
    cli_counts: dict[str, collections.Counter] = {f: collections.Counter() for f in families}
    failures: list[str] = []
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="spine-fuzz-"))
    try:
        for i, case in enumerate(generate(args.n, seed=args.seed, families=families)):
            work = scratch / str(i)

            def tally(runner, counter: collections.Counter, label: str) -> None:
                """One run of ``case`` in a fresh scratch folder, its outcome counted and any failure kept."""
                work.mkdir()
                outcome, detail = runner(case, work)
                shutil.rmtree(work, ignore_errors=True)
                counter[outcome] += 1
                if outcome not in ("ok", "refused"):
                    failures.append(f"#{i} {case.family}/{case.mutation}: {label}{outcome}: {detail}")

            tally(run_case, counts[case.family], "")
            if args.cli and (i // len(families)) % args.cli == 0:  # every family sampled alike
                tally(run_cli_case, cli_counts[case.family], "cli ")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - start
    print(f"fuzz_io: {args.n} inputs, seed {args.seed}, {seconds:.0f} s")
    print("family  " + " ".join(f"{o:>12}" for o in OUTCOMES))
    total: collections.Counter = collections.Counter()
    for fam in families:
        total.update(counts[fam])
        print(f"{fam:<7} " + " ".join(f"{counts[fam][o]:>12}" for o in OUTCOMES))
    print(f"{'all':<7} " + " ".join(f"{total[o]:>12}" for o in OUTCOMES))
    if args.cli:
        cli_total: collections.Counter = collections.Counter()
        print(f"spine-models info --header on every {args.cli}th round of the families (subprocess):")
        for fam in families:
            cli_total.update(cli_counts[fam])
            print(f"{fam:<7} " + " ".join(f"{cli_counts[fam][o]:>12}" for o in OUTCOMES))
        print(f"{'all':<7} " + " ".join(f"{cli_total[o]:>12}" for o in OUTCOMES))
    for line in failures[: args.show]:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
