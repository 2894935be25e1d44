"""A build's run directory and its record (build.json): which stages finished, on which inputs.

A stage is skipped on a re-run when its record says it finished with the same fingerprint: a hash of its
own settings and of the fingerprints of the stages it reads. A changed input re-runs the stages downstream
of it and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgenas import __version__
from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_json, check_schema, now, read_json
from edgenas.versions import versions

SCHEMA, SCHEMA_VERSION = "edgenas.build", 2  # 2: stage results are typed products (docs/schemas.md)
RECORD = "build.json"


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunRecord:
    def __init__(self, out: Path, request: dict):
        self.out, self.path, self.request = Path(out), Path(out) / RECORD, request
        self.stages: dict[str, dict] = {}
        if self.path.exists():
            data = check_schema(read_json(self.path), self.path, SCHEMA, SCHEMA_VERSION, "build record", "give another --out")
            # stage results from another version may mean something else: refuse rather than mix them
            if data.get("edgenas") != __version__:
                raise BadInput(f"{self.path}: left by edgenas {data.get('edgenas')} (record version "
                               f"{data.get('schema_version')}), this is edgenas {__version__} (version {SCHEMA_VERSION}); "
                               f"build into a new --out, or delete {self.out}")
            self.stages = data.get("stages", {})

    def finished(self, name: str, fp: str) -> dict | None:
        rec = self.stages.get(name)
        return rec if rec and rec["fingerprint"] == fp and rec["status"] == "done" else None

    def start(self, name: str, fp: str) -> bool:
        """Marks the stage running; True when it resumes an interrupted run on the same inputs."""
        rec = self.stages.get(name)
        resumed = bool(rec and rec["fingerprint"] == fp)
        self.stages[name] = {"fingerprint": fp, "status": "running", "started": now(),
                             "runs": (rec.get("runs", 0) if resumed else 0) + 1}
        self.save()
        return resumed

    def finish(self, name: str, result: dict, seconds: float) -> dict:
        self.stages[name].update(status="done", finished=now(), seconds=round(seconds, 2), result=result)
        self.save()
        return self.stages[name]

    def save(self) -> None:
        atomic_write_json(self.path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "edgenas": __version__,
                                      "versions": versions(), "request": self.request, "stages": self.stages,
                                      "updated": now()})
