"""DD student training (method.md §5): configs and recipes, the loop, checkpoints, export.

    from ardistill.training import recipe, train, load_trained_student
    res = train(recipe("tiny-1step", pairs="pairs/", out="run/"))
    ts = load_trained_student(res.export)      # .student, .teacher, .t_list, .split
"""

from ardistill.training.config import LossConfig, OptimConfig, TrainConfig, recipe
from ardistill.training.export import TrainedStudent, export_student, load_trained_student
from ardistill.training.loop import TrainingDiverged, TrainResult, train

__all__ = ["LossConfig", "OptimConfig", "TrainConfig", "TrainResult", "TrainedStudent",
           "TrainingDiverged", "export_student", "load_trained_student", "recipe", "train"]
