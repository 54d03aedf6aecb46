"""The README's Quick start stays runnable: exactly two commands, the first parses as a valid CLI call."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from experiments.cli import build_parser
from experiments.loop.config import load_loop
from experiments.loop.evaluate import check_loop

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands_main_job_then_tests() -> None:
    first, second = quick_start_commands()
    assert first.startswith("pip install -e . && ecorank demo")
    assert second == 'pip install -e ".[test]" && pytest'
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -m1 -E '^pip install -e \"\\.\\[test\\]\" && pytest' README.md" in ci


def test_quick_start_main_job_is_a_valid_demo_call() -> None:
    first, _ = quick_start_commands()
    argv = shlex.split(first.split("&&", 1)[1])[1:]  # drop "ecorank"
    args = build_parser().parse_args(argv)
    assert args.command == "demo"
    check_loop(load_loop("demo"))  # raises if the demo config or any policy it names is invalid


def test_fair_traffic_example_runs_and_prints_what_it_says() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Fair traffic weights from Python", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    scope: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)
    result = scope["result"]
    weights = result.weights  # type: ignore[attr-defined]
    assert [round(float(w), 2) for w in weights] == [0.39, 0.11, 0.40, 0.10]  # the comment in the README
    assert round(float(result.explanation.floor_boost[0]), 2) == 1.51  # type: ignore[attr-defined]
