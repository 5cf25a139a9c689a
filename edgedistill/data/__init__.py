"""Target data: embedded offline tasks and users' ImageFolders, seeded splits, preprocessing."""

from edgedistill.data.config import DataConfig
from edgedistill.data.images import ImageSet, TaskData
from edgedistill.data.preprocess import Preprocess
from edgedistill.data.targets import TARGETS, build_task_data

__all__ = ["TARGETS", "DataConfig", "ImageSet", "Preprocess", "TaskData", "build_task_data"]
