"""File-watch reload: pick up a newer traffic plan or a re-exported bundle without an admin call.

Plans are published as immutable version folders (`save_plan` writes plans/v000007/ atomically), so the
watcher looks in the folder the current plan came from for a higher version; a bundle is re-exported in
place, so the watcher compares its manifest's modification time. Whatever it finds goes through
`RankingCore.reload` (load, check, warm up, swap); a candidate that fails is reported once and skipped,
and the server keeps what it has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from serving.core import RankingCore, ReloadError

VERSION_DIR = re.compile(r"^v(\d+)$")


@dataclass
class Watcher:
    core: RankingCore
    plans: Path | None = None   # the folder holding v000001/, v000002/, ...
    bundle: Path | None = None  # a bundle folder re-exported in place
    _bundle_mtime: float | None = None
    _refused: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.bundle is not None:
            self._bundle_mtime = self._mtime(self.bundle)

    @staticmethod
    def _mtime(bundle: Path) -> float | None:
        manifest = bundle / "bundle.json"
        return manifest.stat().st_mtime if manifest.is_file() else None

    def newest_plan(self) -> Path | None:
        if self.plans is None or not self.plans.is_dir():
            return None
        versions = [(int(m.group(1)), p) for p in self.plans.iterdir()
                    if p.is_dir() and (m := VERSION_DIR.match(p.name))]
        return max(versions)[1] if versions else None

    def check(self) -> list[str]:
        """Reload what changed; returns one line per reload or refusal (empty when nothing changed)."""
        events = []
        newest = self.newest_plan()
        current = self.core.state.plan_version
        if newest is not None and int(newest.name[1:]) > current and str(newest) not in self._refused:
            try:
                self.core.reload(plan_path=newest)
                events.append(f"reloaded plan {newest}")
            except ReloadError as err:
                self._refused.add(str(newest))
                events.append(f"refused plan {newest}: {err}")
        if self.bundle is not None:
            mtime = self._mtime(self.bundle)
            if mtime is not None and mtime != self._bundle_mtime:
                self._bundle_mtime = mtime
                try:
                    self.core.reload(bundle_path=self.bundle)
                    events.append(f"reloaded bundle {self.bundle}")
                except ReloadError as err:
                    events.append(f"refused bundle {self.bundle}: {err}")
        return events
