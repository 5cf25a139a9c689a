"""Layout of a run directory (`runs/NAME/`), in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import ConfigError
from edgedistill.options import command


@dataclass(frozen=True)
class RunDir:
    """Paths of one run's files."""

    root: Path

    @property
    def budget(self) -> Path:
        return self.root / "budget.yaml"

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def task(self) -> Path:
        return self.root / "task.yaml"

    @property
    def bank(self) -> Path:
        return self.root / "bank.safetensors"

    @property
    def subnet(self) -> Path:
        return self.root / "subnet.safetensors"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoint"

    @property
    def teachers(self) -> Path:
        return self.root / "teachers"

    @property
    def skipped_images(self) -> Path:
        return self.root / "skipped_images.txt"

    @property
    def train_json(self) -> Path:
        return self.root / "train.json"

    @property
    def search_json(self) -> Path:
        return self.root / "search.json"

    def export_dir(self, target: str) -> Path:
        return self.root / "export" / target

    def require(self, path: Path, made_by: str) -> Path:
        """`path`, or a ConfigError telling which command makes it."""
        if not path.exists():
            raise ConfigError(f"{path}: not found; run `{command(made_by)}` first")
        return path
