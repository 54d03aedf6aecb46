"""The `ecorank` command line.

    ecorank simulate --scenario S1 --policies p0,p1 --seeds 3 --preset default --out runs/s1
    ecorank scenarios                      # list built-in scenarios
    ecorank policies                       # list simulator policies
    ecorank config --scenario S1 --preset tiny --set users.n_users=300   # print the resolved config

Bad arguments or configs print one clear message naming the bad value and the allowed ones and
exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.config import ConfigError, available_presets, list_scenarios, load_scenario

EXIT_USAGE = 2
MIN_SEEDS_FOR_CIS = 5


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="S1",
                        help="built-in id (S0-S4) or name (see `ecorank scenarios`), or a scenario .toml file")
    parser.add_argument("--preset", default="default", choices=available_presets(),
                        help="size preset (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set users.n_users=300 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ecorank", description="Multi-objective ranking and fair-traffic regulation engine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    sim = commands.add_parser("simulate", help="compare ranking policies in the creator-marketplace simulator")
    _add_scenario_arguments(sim)
    sim.add_argument("--policies", default="p0,p1,random,oracle",
                     help="comma-separated policies; the first is the reference of the CIs (default: %(default)s)")
    sim.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds (default: %(default)s)")
    sim.add_argument("--seed", type=_non_negative_int, default=0, help="first seed; seeds are SEED..SEED+N-1")
    sim.add_argument("--out", type=Path, default=None, help="output folder (default: runs/<scenario>-<preset>-<time>)")
    sim.add_argument("--jobs", type=_positive_int, default=1, help="parallel worker processes (default: %(default)s)")
    sim.add_argument("--impressions", choices=("all", "explore", "none"), default=None,
                     help="whose impressions to log to impressions.parquet "
                          "(default: the scenario's outputs.impressions)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")

    commands.add_parser("scenarios", help="list the built-in scenarios")
    commands.add_parser("policies", help="list the simulator policies")
    show = commands.add_parser("config", help="print a resolved, validated scenario config as JSON")
    _add_scenario_arguments(show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args, parser)
        if args.command == "scenarios":
            for row in list_scenarios():
                print(f"{row['id']:<4} {row['name']:<16} {row['title']}")
            return 0
        if args.command == "policies":
            from experiments.policies import POLICIES

            for name, (description, _) in POLICIES.items():
                print(f"{name:<8} {description}")
            return 0
        if args.command == "config":
            config = load_scenario(args.scenario, preset=args.preset, overrides=args.overrides)
            print(json.dumps(config.to_dict(), indent=2))
            return 0
    except ConfigError as err:
        print(f"ecorank {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _simulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from experiments.policies import POLICIES
    from experiments.simulator.runner import run_experiment

    overrides = list(args.overrides)
    if args.impressions:
        overrides.append(f"outputs.impressions={args.impressions}")
    config = load_scenario(args.scenario, preset=args.preset, overrides=overrides)
    policies = [p.strip().lower() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if not policies or unknown:
        raise ConfigError(f"--policies {args.policies!r}: unknown {unknown or 'empty list'}; "
                          f"expected a comma-separated list from {sorted(POLICIES)}")
    if len(set(policies)) != len(policies):
        raise ConfigError(f"--policies {args.policies!r} names a policy twice; list each once")
    seeds = list(range(args.seed, args.seed + args.seeds))
    out = args.out or Path("runs") / f"{config.id}-{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder path")
    experiment = run_experiment(config, policies=policies, seeds=seeds, out=out, jobs=args.jobs, quiet=args.quiet,
                                command=["ecorank", *sys.argv[1:]], overrides=overrides)
    if args.json:
        print(experiment.summary.to_json(orient="records"))
    else:
        print(f"{config.id} {config.title} | preset {config.preset} | {len(seeds)} seed(s) | "
              f"reference {policies[0]}")
        print("cells: mean over seeds, then the difference from the reference [paired bootstrap 95% CI]; "
              "(+) higher is better, (-) lower is better")
        print(experiment.table)
        if len(seeds) < MIN_SEEDS_FOR_CIS:
            print(f"note: {len(seeds)} seed(s); bootstrap CIs over fewer than {MIN_SEEDS_FOR_CIS} seeds are not "
                  "informative (use --seeds 10 for evidence)")
        print(f"\nwrote {out}/ (manifest.json, rounds.parquet, accounts.parquet, runs.parquet, summary.csv, "
              "rounds.png, impressions.parquet)")
    return 0


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"received {text!r}; expected an integer >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"received {text!r}; expected an integer >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"received {text!r}; expected an integer") from None


if __name__ == "__main__":
    raise SystemExit(main())
