"""The `ecorank` command line.

    ecorank demo [--out runs/demo]         # the closed loop on a small preset, report included (< 3 min)
    ecorank loop evaluation --out runs/eval   # the closed loop from a config (built-in name or .toml)
    ecorank report runs/eval               # redraw a finished loop's plots and report from its files
    ecorank tune model --data runs/demo/logs --out runs/tune   # Ray Tune model sweep (ASHA), best bundle saved
    ecorank tune policy --out runs/tune-policy   # multi-objective policy sweep in the simulator, Pareto front
    ecorank score --data candidates/ --bundle bundles/mmoe --plan plans/v000001 --ray --out scores   # batch scoring
    ecorank plan --synthetic-markets 8 --pairs-per-market 100000 --ray --out plans   # per-market planner on Ray
    ecorank simulate --scenario S1 --policies p0,p1 --seeds 3 --preset default --out runs/s1
    ecorank scenarios                      # list built-in scenarios
    ecorank policies                       # list simulator policies
    ecorank config --scenario S1 --preset tiny --set users.n_users=300   # print the resolved config
    ecorank train --data runs/X/impressions.parquet --model mmoe --out bundles/mmoe   # multi-task model
    ecorank evaluate --bundle bundles/mmoe --data runs/Y/impressions.parquet [--json]
    ecorank serve [--bundle DIR] [--plan DIR] [--port 50051]   # gRPC traffic weights (serving/cli.py)
    ecorank rank --data candidates.parquet --server 127.0.0.1:50051

Bad arguments or configs print one clear message naming the bad value and the allowed ones and
exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.config import ConfigError, available_presets, list_scenarios, load_scenario, parse_overrides
from serving import cli as serving_cli

if TYPE_CHECKING:
    from mtl.bundle import Bundle

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

    train = commands.add_parser("train", help="train a multi-task model on impressions and write a bundle")
    train.add_argument("--data", required=True, type=Path,
                       help="Parquet file or folder, or CSV file (e.g. a simulate run's impressions.parquet)")
    train.add_argument("--schema", default="ecorank",
                       help="built-in schema (ecorank, census_income, ali_ccp) or a .toml file (default: %(default)s)")
    train.add_argument("--model", default="mmoe", choices=("shared_bottom", "mmoe", "ple"),
                       help="architecture (default: %(default)s)")
    train.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=1024)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--task-weighting", choices=("equal", "fixed", "uncertainty", "pcgrad"), default="equal")
    train.add_argument("--task-weight", dest="task_weights", action="append", default=[], metavar="HEAD=W",
                       help="fixed task weight (repeatable; with --task-weighting fixed)")
    train.add_argument("--monitor", default="loss",
                       help="validation quantity for early stopping: loss or HEAD.METRIC, e.g. risk.auc")
    train.add_argument("--patience", type=_positive_int, default=3)
    train.add_argument("--calibration", choices=("isotonic", "temperature", "none"), default="isotonic")
    train.add_argument("--model-set", dest="model_overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="architecture override, e.g. --model-set n_experts=8 --model-set expert_hidden=[128,64]")
    train.add_argument("--stream", action="store_true",
                       help="data larger than memory: read --data (Parquet) by row group; needs --val and --test")
    train.add_argument("--val", type=Path, default=None, help="validation Parquet/CSV file (with --stream)")
    train.add_argument("--test", type=Path, default=None, help="test Parquet/CSV file (with --stream)")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--ray-workers", type=_positive_int, default=None, metavar="N",
                       help="distributed data-parallel training on N Ray Train workers (needs the ray extra); "
                            "each takes batch-size / N rows per step, so the global batch stays --batch-size")
    train.add_argument("--address", default=None, help="with --ray-workers: a Ray cluster to join "
                                                       "(default: a local Ray)")
    train.add_argument("--num-cpus", type=_positive_int, default=None,
                       help="with --ray-workers: logical CPUs of the local Ray (default: the cores, at least N + 1)")
    train.add_argument("--storage", type=Path, default=None,
                       help="with --ray-workers: the shards and Ray Train's run folder; on a cluster a path every "
                            "node reads (default: OUT/ray)")

    evaluate = commands.add_parser("evaluate", help="per-head metrics of a bundle on labelled data")
    evaluate.add_argument("--bundle", required=True, type=Path)
    evaluate.add_argument("--data", required=True, type=Path)
    evaluate.add_argument("--uncalibrated", action="store_true", help="score the raw (uncalibrated) probabilities")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    demo = commands.add_parser("demo", help="the closed loop on a small preset: simulate, train, plan, evaluate, "
                                            "report (about 2 minutes on 2 cores)")
    demo.add_argument("--out", type=Path, default=Path("runs") / "demo", help="report folder (default: %(default)s)")
    demo.add_argument("--jobs", type=int, default=None, help="simulation worker processes (default: the config's)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    loop = commands.add_parser("loop", help="the closed loop from a config: logs -> models -> plan -> evaluation "
                                            "-> report")
    loop.add_argument("config", help="a built-in loop config (tiny, demo, evaluation) or a path to a .toml file")
    loop.add_argument("--out", type=Path, default=None, help="report folder (default: runs/loop-NAME-TIMESTAMP)")
    loop.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a loop config value, e.g. --set seeds=[0,1,2] (repeatable)")
    loop.add_argument("--jobs", type=int, default=None, help="simulation worker processes (default: the config's)")
    loop.add_argument("--quiet", action="store_true", help="no progress bars")
    report = commands.add_parser("report", help="redraw the plots and rewrite the report of a finished loop folder "
                                                "(no new simulation)")
    report.add_argument("folder", type=Path, help="the output folder of `ecorank loop` or `ecorank demo`")
    tune_parser = commands.add_parser("tune", help="Ray Tune sweeps (needs the ray extra: pip install -e '.[ray]')")
    sweeps = tune_parser.add_subparsers(dest="sweep", required=True, parser_class=_Parser, metavar="SWEEP")
    model = sweeps.add_parser("model", help="model type, experts, levels, widths, learning rate and task weighting, "
                                            "ASHA on the validation loss; the best bundle is saved")
    model.add_argument("--data", type=Path, required=True, help="impressions: a Parquet file or a folder of them")
    model.add_argument("--out", type=Path, default=Path("runs") / "tune-model", help="results folder "
                                                                                     "(default: %(default)s)")
    model.add_argument("--samples", type=int, default=12, help="trials (default: %(default)s)")
    model.add_argument("--epochs", type=int, default=8, help="epochs per trial at most (default: %(default)s)")
    model.add_argument("--seed", type=int, default=0)
    model.add_argument("--smoke-test", action="store_true", help="two trials of two epochs: the whole path, fast")
    model.add_argument("--address", default=None, help="a Ray cluster to join (default: a local Ray)")
    model.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    model.add_argument("--storage", type=Path, default=None, help="where Ray keeps the sweep, resumable "
                                                                  "(default: OUT/ray)")
    _add_policy_sweep(sweeps)
    plan = commands.add_parser("plan", help="solve the offline traffic plan, per market in parallel (Ray tasks with "
                                            "--ray), and save it for `ecorank serve --plan`")
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", type=Path, help="planner inputs folder (creators/segments/pairs.parquet, "
                                                    "fairness.planner.input_files)")
    source.add_argument("--synthetic-markets", type=_positive_int, metavar="M",
                        help="M seeded synthetic markets of --pairs-per-market pairs each (demos, benchmarks)")
    plan.add_argument("--pairs-per-market", type=_positive_int, default=10_000)
    plan.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the synthetic markets")
    plan.add_argument("--policy", default="default", help="fairness policy: built-in name or .toml path")
    plan.add_argument("--by", choices=("market", "segment", "none"), default="market",
                      help="partition: one program per market (segment 'market/surface'), per segment, or one joint "
                           "program (default: %(default)s)")
    plan.add_argument("--ray", action="store_true", help="solve the partitions as Ray tasks (local Ray, or --address)")
    plan.add_argument("--address", default=None, help="a Ray cluster to join (default: a local Ray)")
    plan.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs of the local Ray (default: all)")
    plan.add_argument("--version", type=_positive_int, default=1, help="plan version (default: %(default)s)")
    plan.add_argument("--out", type=Path, required=True, help="plans folder; the plan goes to OUT/vNNNNNN")
    plan.add_argument("--save-inputs", type=Path, default=None, help="also write the inputs there (input_files)")
    _add_score(commands)
    commands.add_parser("scenarios", help="list the built-in scenarios")
    commands.add_parser("policies", help="list the simulator policies")
    show = commands.add_parser("config", help="print a resolved, validated scenario config as JSON")
    _add_scenario_arguments(show)
    serving_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args, parser)
        if args.command in ("serve", "rank"):
            return serving_cli.run(args)
        if args.command in ("train", "evaluate"):
            return _train(args) if args.command == "train" else _evaluate(args)
        if args.command in ("demo", "loop"):
            return _loop(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "score":
            return _score(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "report":
            from experiments.loop.run import rereport

            goals, headline = rereport(args.folder)
            print(headline)
            print(f"\ngoals met: {sum(1 for g in goals if g.met)} of {sum(1 for g in goals if g.met is not None)}")
            print(f"report: {args.folder / 'report.md'}")
            return 0
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


def _add_policy_sweep(sweeps: argparse._SubParsersAction[_Parser]) -> None:
    policy = sweeps.add_parser("policy", help="blend weights and fairness knobs of ecorank in the simulator: a "
                                              "multi-objective search (GMV, exposure Gini, complaints, risk), the "
                                              "Pareto front, the chosen point as a policy file")
    _add_scenario_arguments(policy)
    policy.set_defaults(scenario="S4", preset="evaluation")
    policy.add_argument("--samples", type=_positive_int, default=24, help="trials (default: %(default)s)")
    policy.add_argument("--seeds", type=_positive_int, default=3,
                        help="simulation seeds per trial, the same for every trial (default: %(default)s)")
    policy.add_argument("--seed", type=_non_negative_int, default=0,
                        help="the search's seed; the simulation seeds are SEED..SEED+N-1 (default: %(default)s)")
    policy.add_argument("--rounds", type=_positive_int, default=None, help="rounds per run (default: the preset's)")
    policy.add_argument("--bundle", type=Path, default=None,
                        help="rank with this trained bundle's heads (default: the simulator's observable estimator)")
    policy.add_argument("--max-gini", type=float, default=None,
                        help="choose the front point with the highest GMV whose gini_account is at most this "
                             "(default: the balanced point, closest to the ideal one)")
    policy.add_argument("--export", default=None, metavar="TRIAL_ID",
                        help="write trial TRIAL_ID of the finished sweep in --out as OUT/policy-TRIAL_ID.toml "
                             "(no simulation, no Ray)")
    policy.add_argument("--out", type=Path, default=Path("runs") / "tune-policy",
                        help="results folder (default: %(default)s)")
    policy.add_argument("--smoke-test", action="store_true",
                        help="4 trials on the tiny preset, 2 seeds, 12 rounds: the whole path, fast")
    policy.add_argument("--address", default=None, help="a Ray cluster to join (default: a local Ray)")
    policy.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs of the local Ray (default: all)")
    policy.add_argument("--concurrency", type=_positive_int, default=2,
                        help="trials at once (default: %(default)s; 1 makes the whole search reproducible)")
    policy.add_argument("--storage", type=Path, default=None, help="where Ray keeps the sweep, resumable "
                                                                   "(default: OUT/ray)")


def _tune(args: argparse.Namespace) -> int:
    return _tune_policy(args) if args.sweep == "policy" else _tune_model(args)


def _tune_policy(args: argparse.Namespace) -> int:
    from experiments.tune.policy_sweep import SMOKE, PolicySweep, check_resumable, export_trial, write_results

    if args.export is not None:
        path = export_trial(args.out, args.export)
        print(f"policy: {path} (ecorank serve --policy {path})")
        return 0
    if args.max_gini is not None and not 0.0 < args.max_gini <= 1.0:
        raise ConfigError(f"--max-gini: received {args.max_gini:g}; expected a Gini in (0, 1], e.g. 0.4")
    preset, rounds, samples, n_seeds = SMOKE if args.smoke_test else (args.preset, args.rounds, args.samples,
                                                                      args.seeds)
    overrides = list(args.overrides)
    if rounds is not None:
        overrides.append(f"run.rounds={rounds}")
    if args.bundle is not None:
        from mtl.bundle import load_bundle

        with _as_usage_errors():  # fail now, not inside every trial
            load_bundle(args.bundle)
        overrides.append(f"policies.heads_bundle={json.dumps(str(args.bundle.resolve()))}")
    config = load_scenario(args.scenario, preset=preset, overrides=overrides)
    sweep = PolicySweep(config=config, seeds=tuple(range(args.seed, args.seed + n_seeds)), samples=samples,
                        seed=args.seed)
    sweep.check()
    check_resumable(args.out, sweep)
    try:
        from experiments.tune.ray_adapter import run_policy_sweep
    except ImportError as err:
        raise ConfigError(f"ecorank tune needs Ray ({err}); install it with pip install -e '.[ray]'") from None
    trials, path = run_policy_sweep(sweep, storage=args.storage or args.out / "ray", address=args.address,
                                    num_cpus=args.num_cpus, max_concurrent=args.concurrency)
    front, chosen = write_results(trials, sweep, args.out, max_gini=args.max_gini)
    columns = ["trial_id", "gmv", "gini_account", "complaints_per_1k", "risk_share", "is_base", "chosen"]
    print(f"Pareto front: {len(front)} of {len(trials)} trials ({config.id} {config.preset}, seeds "
          f"{list(sweep.seeds)})")
    print(front.assign(chosen=front["trial_id"] == chosen["trial_id"])[columns].to_string(index=False))
    print(f"\nchosen: {chosen['trial_id']}\npolicy: {args.out / 'policy.toml'} (ecorank serve --policy "
          f"{args.out / 'policy.toml'})\nresults: {args.out}/ (trials.csv, pareto.csv, pareto.png, sweep.json); "
          f"resumable from {path}")
    return 0


def _tune_model(args: argparse.Namespace) -> int:
    from experiments.tune.model_sweep import ModelSweep

    if not args.data.exists():
        raise ConfigError(f"--data: received {str(args.data)!r}, which does not exist; expected impressions "
                          "(a Parquet file or folder), e.g. runs/demo/logs from `ecorank demo`")
    for name in ("samples", "epochs"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name}: received {getattr(args, name)}; expected a positive number")
    try:
        from experiments.tune.ray_adapter import run_model_sweep
    except ImportError as err:
        raise ConfigError(f"ecorank tune needs Ray ({err}); install it with pip install -e '.[ray]'") from None
    sweep = (ModelSweep.smoke(args.data) if args.smoke_test
             else ModelSweep(data=args.data, samples=args.samples, epochs=args.epochs, seed=args.seed))
    result = run_model_sweep(sweep, out=args.out, storage=args.storage or args.out / "ray", address=args.address,
                             num_cpus=args.num_cpus)
    print(result.table.drop(columns="path").to_string(index=False))
    print(f"\nbest: {result.best_params}\nbundle: {result.best_bundle} (ecorank serve --bundle {result.best_bundle})"
          f"\ntrials: {args.out / 'trials.csv'}; resumable from {result.path}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import numpy as np

    from fairness.planner import PlanInputError, plan_traffic, save_plan
    from fairness.planner.input_files import load_inputs, save_inputs
    from fairness.planner.partition import market_of_segment, plan_by_market, split_by_market, synthetic_markets
    from fairness.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.policy)
        if args.inputs is not None:
            inputs = load_inputs(args.inputs)
        else:
            inputs = synthetic_markets(args.synthetic_markets, args.pairs_per_market, np.random.default_rng(args.seed))
        if args.save_inputs is not None:
            save_inputs(inputs, args.save_inputs)
        partitions: dict[str, Callable[[str], str]] = {"market": market_of_segment, "segment": str,
                                                       "none": _one_market}
        parts = split_by_market(inputs, partitions[args.by])
    except (PolicyError, PlanInputError) as err:
        raise ConfigError(str(err)) from None
    if args.ray:
        try:
            from experiments.scale.plan import plan_markets_on_ray
            from experiments.tune.ray_adapter import start
        except ImportError as err:
            raise ConfigError(f"--ray needs Ray ({err}); install it with pip install -e '.[ray]'") from None
        start(address=args.address, num_cpus=args.num_cpus)  # before the clock: the time is the plan's
    started = time.perf_counter()
    if args.by == "none" and not args.ray:
        result = plan_traffic(inputs, policy, version=args.version)
    elif args.ray:
        result = plan_markets_on_ray(inputs, policy, version=args.version, parts=parts)
    else:
        result = plan_by_market(inputs, policy, version=args.version, parts=parts)
    seconds = time.perf_counter() - started
    path = save_plan(result, args.out)
    largest = max(part.n_pairs for part in parts)
    print(f"planned {inputs.n_pairs:,} pairs ({inputs.n_creators:,} creators, {len(inputs.segments)} segments) as "
          f"{len(parts)} {args.by if args.by != 'none' else 'joint'} program(s), largest {largest:,} pairs, "
          f"{'on Ray' if args.ray else 'in this process'}: {seconds:.2f} s; solver {result.solver}, "
          f"status {result.status}, objective {result.objective:.6g}")
    for note in result.relaxed[:5]:
        print(f"  relaxed: {note}")
    if len(result.relaxed) > 5:
        print(f"  ... and {len(result.relaxed) - 5} more relaxations (manifest.json)")
    print(f"plan: {path} (ecorank serve --plan {path})")
    return 0


def _one_market(segment: str) -> str:
    return "all"


def _add_score(commands: argparse._SubParsersAction[_Parser]) -> None:
    score = commands.add_parser("score", help="batch scoring with the serving engine: Parquet candidates in, heads, "
                                              "utility, traffic weights and ranks out as Parquet (in this process, "
                                              "or on Ray Data with --ray)")
    score.add_argument("--data", type=Path, required=True,
                       help="a Parquet file or folder: item_id, creator_id, cluster_id, original, the model's features "
                            "and, to allocate traffic, request_id (one ranking request per id)")
    score.add_argument("--out", type=Path, required=True, help="a new or empty folder for the scores' Parquet files")
    score.add_argument("--bundle", type=Path, default=None,
                       help="model bundle folder (default: the embedded default, as `ecorank serve`)")
    score.add_argument("--plan", type=Path, default=None, help="traffic plan folder (save_plan's v000NNN)")
    score.add_argument("--policy", default="default", help="fairness policy: built-in name or .toml path")
    score.add_argument("--surface", default="content", help="the surface whose policy ranks (default: %(default)s)")
    score.add_argument("--batch-size", type=_positive_int, default=8_192,
                       help="candidates per engine call, whole requests (default: %(default)s)")
    score.add_argument("--threads", type=_positive_int, default=1,
                       help="torch threads per scorer: this process, or each Ray actor (default: %(default)s)")
    score.add_argument("--ray", action="store_true", help="score on Ray Data: read, shuffle whole requests to "
                                                          "actors, write in parallel")
    score.add_argument("--workers", type=_positive_int, default=2,
                       help="with --ray: scoring actors, one engine each (default: %(default)s)")
    score.add_argument("--address", default=None, help="with --ray: a Ray cluster to join (default: a local Ray)")
    score.add_argument("--num-cpus", type=_positive_int, default=None,
                       help="with --ray: logical CPUs of the local Ray (default: the cores, at least workers x "
                            "threads + 1)")
    score.add_argument("--quiet", action="store_true", help="no progress bar")


def _score(args: argparse.Namespace) -> int:
    from fairness.planner import PlanError, load_plan
    from fairness.policy import PolicyError, load_policy
    from mtl.bundle import BundleError, load_bundle
    from serving.batch import BatchInputError, BatchScorer, EngineParts, score_parquet
    from serving.core import ReloadError

    if not args.ray and (args.address is not None or args.num_cpus is not None):
        raise ConfigError("--address and --num-cpus are for --ray; without it scoring runs in this process")
    try:
        policy = load_policy(args.policy)
        bundle_path, plan_path = args.bundle, args.plan
        if bundle_path is None:
            from serving.default import default_paths

            print("ecorank score: no --bundle given; using the embedded default", file=sys.stderr)
            bundle_path, default_plan = default_paths(policy, progress=not args.quiet)
            plan_path = plan_path or default_plan
        parts = EngineParts(bundle=load_bundle(bundle_path), policy=policy,
                            plan=load_plan(plan_path) if plan_path is not None else None)
        if args.ray:
            try:
                from experiments.scale.score import RayScoring, score_parquet_ray
                from experiments.tune.ray_adapter import start
            except ImportError as err:
                raise ConfigError(f"--ray needs Ray ({err}); install it with pip install -e '.[ray]'") from None
            job = RayScoring(parts=parts, surface=args.surface, batch_size=args.batch_size, workers=args.workers,
                             threads=args.threads)
            start(address=args.address, num_cpus=args.num_cpus, min_cpus=job.cpus_needed)
            summary = score_parquet_ray(args.data, args.out, job, progress=not args.quiet)
        else:
            import torch

            torch.set_num_threads(args.threads)
            scorer = BatchScorer(parts.core(), surface=args.surface, batch_size=args.batch_size)
            summary = score_parquet(args.data, args.out, scorer, progress=not args.quiet)
    except (PolicyError, PlanError, BundleError, ReloadError, BatchInputError) as err:
        raise ConfigError(str(err)) from None
    what = "heads, utility, weight, rank" if summary.per_request else "heads, utility (no request_id: no allocation)"
    requests = f" in {summary.requests:,} requests" if summary.requests is not None else ""
    print(f"scored {summary.rows:,} candidates{requests} {'on Ray Data' if args.ray else 'in this process'} in "
          f"{summary.seconds:.2f} s ({summary.rows / max(summary.seconds, 1e-9):,.0f}/s): {what}; model "
          f"{summary.model_version}, plan v{summary.plan_version}\nscores: {args.out} ({len(summary.files)} Parquet "
          "file(s))")
    return 0


def _loop(args: argparse.Namespace) -> int:
    from experiments.loop.config import LOOPS_DIR, load_loop
    from experiments.loop.run import run_loop

    source = "demo" if args.command == "demo" else args.config
    overrides = list(getattr(args, "overrides", []))
    if args.jobs is not None:
        if args.jobs < 1:
            raise ConfigError(f"--jobs: received {args.jobs}; expected a positive number of worker processes")
        overrides.append(f"jobs={args.jobs}")
    loop = load_loop(source, overrides=overrides)
    path = Path(source) if Path(source).suffix else LOOPS_DIR / f"{source}.toml"
    out = args.out or Path("runs") / f"loop-{loop.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder path")
    print(f"ecorank {args.command}: {loop.name} | preset {loop.preset} | scenarios {', '.join(loop.scenarios)} | "
          f"{len(loop.seeds)} seeds | {len(loop.policies)} policies | {loop.jobs} worker(s)", file=sys.stderr)
    result = run_loop(loop, out, config_path=path, overrides=overrides, command=["ecorank", *sys.argv[1:]],
                      progress=not args.quiet)
    met = sum(1 for g in result.goals if g.met)
    print(result.headline)
    print(f"\ngoals met: {met} of {sum(1 for g in result.goals if g.met is not None)} (report.md lists each)")
    for goal in result.goals:
        if goal.met is False:
            print(f"  missed  {goal.scenario}: {goal.statement}: {goal.measured}")
    print(f"\nreport: {out / 'report.md'} ({result.manifest['wall_seconds']:.0f} s)")
    return 0


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


def _train(args: argparse.Namespace) -> int:
    from mtl.schema import load_schema
    from mtl.train import train_bundle, train_bundle_streaming
    from mtl.trainer import TrainConfig

    if args.stream and (args.val is None or args.test is None):
        raise ConfigError("--stream needs --val and --test files: a stream is not split in memory. Fix: split "
                          "your data into train / validation / test files (by request) and pass all three")
    if not args.stream and (args.val is not None or args.test is not None):
        raise ConfigError("--val and --test are for --stream; without it --data is split 80/10/10 by group")
    if args.ray_workers is None and (args.address or args.num_cpus or args.storage):
        raise ConfigError("--address, --num-cpus and --storage are for --ray-workers N; without it training runs "
                          "in this process")
    if args.ray_workers is not None and args.stream:
        raise ConfigError("--ray-workers and --stream do not combine: distributed training splits --data itself "
                          "and streams its shards through Ray Data. Drop --stream (and --val, --test)")

    with _as_usage_errors():
        schema = load_schema(args.schema)
        weights = parse_overrides(args.task_weights)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             task_weighting=args.task_weighting,
                             task_weights=tuple((k, float(v)) for k, v in weights.items()),
                             monitor=args.monitor, patience=args.patience, seed=args.seed)
        common = {"schema": schema, "model_name": args.model, "out": args.out, "config": config,
                  "model_overrides": parse_overrides(args.model_overrides), "calibration": args.calibration,
                  "progress": not args.quiet}
        if args.ray_workers is not None:
            bundle = _train_on_ray(args, common)
        elif args.stream:
            bundle = train_bundle_streaming(train_path=args.data, val_path=args.val, test_path=args.test, **common)
        else:
            bundle = train_bundle(data=args.data, **common)
    print(f"trained {args.model} on {args.data} (schema {schema.name}); best epoch {bundle.metrics['best_epoch']} "
          f"of {bundle.metrics['epochs_run']}; bundle {args.out} version {bundle.version}")
    print("test split, calibrated:")
    print(_metrics_table(bundle.metrics["test"]))
    return 0


def _train_on_ray(args: argparse.Namespace, common: dict[str, Any]) -> Bundle:
    try:
        from experiments.scale.train import check_workers, train_bundle_distributed
    except ImportError as err:
        raise ConfigError(f"--ray-workers needs Ray ({err}); install it with pip install -e '.[ray]'") from None
    check_workers(args.ray_workers, batch_size=args.batch_size)  # before the data is read or Ray starts
    print(f"ecorank train: {args.ray_workers} Ray Train worker(s), {args.batch_size // args.ray_workers} rows "
          "per worker per step", file=sys.stderr)
    kwargs = {k: v for k, v in common.items() if k != "progress"}  # the workers show no progress bar
    return train_bundle_distributed(data=args.data, workers=args.ray_workers, address=args.address,
                                    num_cpus=args.num_cpus, storage=args.storage or args.out / "ray", **kwargs)


def _evaluate(args: argparse.Namespace) -> int:
    from mtl.bundle import load_bundle
    from mtl.data import read_table, validate
    from mtl.train import evaluate_bundle

    with _as_usage_errors():
        bundle = load_bundle(args.bundle)
        table = read_table(args.data, schema=bundle.schema)
        validate(table, bundle.schema, source=str(args.data))
        metrics = evaluate_bundle(bundle, table, calibrated=not args.uncalibrated)
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "version": bundle.version, "data": str(args.data),
                          "calibrated": not args.uncalibrated, "metrics": metrics}))
    else:
        print(f"bundle {args.bundle} (version {bundle.version}) on {args.data}, "
              f"{'uncalibrated' if args.uncalibrated else 'calibrated'}:")
        print(_metrics_table(metrics))
    return 0


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Heads as rows, metrics as columns (blank where a metric does not apply to the head's kind)."""
    columns = list(dict.fromkeys(name for values in metrics.values() for name in values))
    rows = [["head", *columns]]
    for head, values in metrics.items():
        rows.append([head, *(f"{values[c]:.4g}" if c in values else "" for c in columns)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


@contextmanager
def _as_usage_errors() -> Iterator[None]:
    """Bad schema, data, bundle or settings: one clear line and exit code 2 (no traceback)."""
    from mtl.bundle import BundleError
    from mtl.data import DataError
    from mtl.schema import SchemaError

    try:
        yield
    except (SchemaError, DataError, BundleError) as err:
        raise ConfigError(str(err)) from None
    except ValueError as err:  # settings rejected by TrainConfig, build_model or the split
        raise ConfigError(str(err)) from None


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
