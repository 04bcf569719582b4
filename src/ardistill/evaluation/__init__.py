"""Evaluation of samples: image metrics against a reference (`images`), token metrics with
the teacher (`tokens`), the function behind `ardistill eval` (`run`), and the Table-1 report
of sample runs (`report`)."""
