"""Released sampling settings of the VAR DD students (microsoft/distilled_decoding VAR/README).

Few-step: `teachers.var.presets.PRESETS[name].dd` (t2 and split: d16 5, d20 / d24 4).
Teacher-involved ("pre-trained-n-m", method.md §6; `student.procedure.teacher_involved`),
released for VAR-DD-d16 only, teacher sampling as the teacher preset's (cfg 2.0, top-k 900,
top-p 0.95); the step count is DD steps + teacher scales, with FIDs from the official README.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TeacherInvolvedRecipe:
    """t_list: (0, m) DD timesteps in scales; teacher_start: n, the teacher generates scales
    n..m-1 (0: no first DD step); split: logits head for scales < split, both DD steps."""

    t_list: tuple[int, int]
    teacher_start: int
    split: int
    official_fid: float  # ImageNet-256, 50k samples, as reported by the release


TEACHER_INVOLVED: dict[str, dict[str, TeacherInvolvedRecipe]] = {
    "var-d16": {
        "3-step": TeacherInvolvedRecipe((0, 5), teacher_start=4, split=5, official_fid=6.54),
        "4-step": TeacherInvolvedRecipe((0, 5), teacher_start=3, split=8, official_fid=5.47),
        "6-step": TeacherInvolvedRecipe((0, 5), teacher_start=0, split=9, official_fid=5.03),
    },
}
