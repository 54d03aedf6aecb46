"""File-watch reload: a newer plan version or a re-exported bundle is picked up; a bad one is refused once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fairness.planner import load_plan
from fairness.policy import load_policy
from mtl.bundle import load_bundle
from serving.core import RankingCore
from serving.watch import Watcher


def test_watcher_reloads_newer_plans_and_bundles_and_refuses_bad_ones(bundle_dir: Path, plan_dirs: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    plans, bundle = tmp_path / "plans", tmp_path / "bundle"
    shutil.copytree(plan_dirs[0], plans / "v000001")
    shutil.copytree(bundle_dir, bundle)
    core = RankingCore(load_bundle(bundle), load_policy(), plan=load_plan(plans / "v000001"))
    watcher = Watcher(core, plans=plans, bundle=bundle)
    assert watcher.check() == []
    shutil.copytree(plan_dirs[1], plans / "v000002")  # a new version is published
    assert watcher.check() == [f"reloaded plan {plans / 'v000002'}"]
    assert core.state.plan_version == 2
    (plans / "v000003").mkdir()  # a broken one
    (refused,) = watcher.check()
    assert refused.startswith(f"refused plan {plans / 'v000003'}")
    assert watcher.check() == []  # reported once, not retried every tick
    assert core.state.plan_version == 2
    before = core.state
    manifest = bundle / "bundle.json"
    os.utime(manifest, (manifest.stat().st_atime, manifest.stat().st_mtime + 10))  # re-exported in place
    assert watcher.check() == [f"reloaded bundle {bundle}"]
    assert core.state is not before
    (bundle / "model.pt").write_bytes(b"broken")
    os.utime(manifest, (manifest.stat().st_atime, manifest.stat().st_mtime + 10))
    (event,) = watcher.check()
    assert event.startswith(f"refused bundle {bundle}")
    assert core.state.plan_version == 2  # still serving what it had
