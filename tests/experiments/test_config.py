from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import (
    ConfigError,
    available_presets,
    list_scenarios,
    load_scenario,
    parse_overrides,
    resolve_scenario_path,
)

SCENARIOS = ["S0", "S1", "S2", "S3", "S4"]


@pytest.mark.parametrize("preset", ["tiny", "default"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_builtin_scenario_and_preset_validates(scenario: str, preset: str) -> None:
    config = load_scenario(scenario, preset=preset)
    assert config.id == scenario
    assert config.preset == preset


def test_presets_have_the_documented_sizes() -> None:
    tiny = load_scenario("S1", preset="tiny")
    assert (tiny.users.n_users, tiny.accounts.initial_operators, tiny.run.rounds) == (200, 50, 20)
    default = load_scenario("S4", preset="default")
    assert (default.users.n_users, default.run.rounds, default.ranking.slots, default.retrieval.candidates) == (
        5000, 200, 10, 100)


def test_scenarios_are_addressable_by_id_name_and_path() -> None:
    rows = {row["id"]: row for row in list_scenarios()}
    assert sorted(rows) == SCENARIOS
    by_name = resolve_scenario_path("matthew_lockin")
    assert by_name == resolve_scenario_path("s1") == Path(rows["S1"]["file"])
    assert load_scenario(str(by_name), preset="tiny").name == "matthew_lockin"


def test_scenario_specific_values_are_applied() -> None:
    assert load_scenario("S0", preset="tiny").popularity.feedback is False
    assert load_scenario("S1", preset="tiny").accounts.legacy_share == 0.2
    assert load_scenario("S2", preset="default").wave.reupload_start == 30
    assert load_scenario("S2", preset="tiny").wave.reupload_start == 6  # its [preset.tiny] table
    assert load_scenario("S3", preset="default").wave.matrix_operators == 10
    assert load_scenario("S4", preset="tiny").adversaries.adaptive is True


def test_user_scenario_file_extends_base(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('id = "X1"\nname = "mine"\ntitle = "Mine"\ndescription = "d"\n[users]\nn_users = 321\n')
    config = load_scenario(path, preset="tiny")
    assert (config.id, config.users.n_users, config.run.rounds) == ("X1", 321, 20)


def test_overrides_are_typed_toml_literals() -> None:
    parsed = parse_overrides(["users.n_users=300", "signals.estimates_are_truth=true",
                              "adversaries.matrix_sizes=[2, 4]", "outputs.impressions=all"])
    assert parsed == {"users.n_users": 300, "signals.estimates_are_truth": True,
                      "adversaries.matrix_sizes": [2, 4], "outputs.impressions": "all"}
    assert load_scenario("S1", preset="tiny", overrides=["users.n_users=300"]).users.n_users == 300


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown scenario 'S9'.*S1 matthew_lockin"):
        load_scenario("S9")


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*\['default', 'evaluation', 'tiny'\]"):
        load_scenario("S1", preset="huge")
    assert available_presets() == ["default", "evaluation", "tiny"]


def test_unknown_override_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'n_user'.*did you mean 'n_users'"):
        load_scenario("S1", preset="tiny", overrides=["users.n_user=3"])
    with pytest.raises(ConfigError, match=r"no section 'user'.*did you mean 'users'"):
        load_scenario("S1", preset="tiny", overrides=["user.n_users=3"])
    with pytest.raises(ConfigError, match=r"not of the form section\.key=value"):
        parse_overrides(["users.n_users"])


def test_out_of_range_value_says_received_and_expected() -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("S1", preset="tiny", overrides=["users.n_users=-5", "signals.quality_noise=-1"])
    message = str(info.value)
    assert "users.n_users: received -5; expected: Input should be greater than or equal to 1" in message
    assert "signals.quality_noise: received -1" in message
    assert "--set users.n_users=VALUE" in message


def test_wrong_type_and_bad_literal_are_reported() -> None:
    with pytest.raises(ConfigError, match=r"run.rounds: received 'many'"):
        load_scenario("S1", preset="tiny", overrides=["run.rounds=many"])
    with pytest.raises(ConfigError, match=r"outputs.impressions: received 'some'.*'all', 'explore' or 'none'"):
        load_scenario("S1", preset="tiny", overrides=["outputs.impressions=some"])


def test_contradictory_settings_are_rejected_with_the_relaxation() -> None:
    with pytest.raises(ConfigError, match=r"run.burn_in = 30 must be smaller than run.rounds = 20"):
        load_scenario("S1", preset="tiny", overrides=["run.burn_in=30"])
    with pytest.raises(ConfigError, match=r"ranking.slots = 60 exceeds retrieval.candidates = 50"):
        load_scenario("S1", preset="tiny", overrides=["ranking.slots=60"])
    with pytest.raises(ConfigError, match=r"type_prior weights sum to 0"):
        load_scenario("S1", preset="tiny", overrides=["accounts.type_prior={original = 0.0}"])
    with pytest.raises(ConfigError, match=r"unknown account types \['pirate'\]"):
        load_scenario("S1", preset="tiny", overrides=["accounts.type_prior={pirate = 1.0}"])


def test_unknown_key_in_a_scenario_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('id = "T"\nname = "t"\ntitle = "t"\ndescription = "d"\n[users]\nn_usrs = 3\n')
    with pytest.raises(ConfigError, match=r"users.n_usrs: unknown key.*did you mean 'n_users'"):
        load_scenario(path, preset="tiny")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("id = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_scenario(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")
