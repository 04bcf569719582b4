"""DD student training (method.md §5): configs and recipes, the loop, checkpoints.

    from ardistill.training import recipe, train
    from ardistill.student.files import load_trained_student
    res = train(recipe("tiny-1step", pairs="pairs/", out="run/"))
    ts = load_trained_student(res.export)      # .student, .teacher, .t_list, .split
"""

from ardistill.training.config import LossConfig, OptimConfig, TrainConfig, recipe
from ardistill.training.loop import TrainResult, train

__all__ = ["LossConfig", "OptimConfig", "TrainConfig", "TrainResult", "recipe", "train"]
